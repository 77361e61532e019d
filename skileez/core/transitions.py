"""The one way any status changes.

Each stateful model declares ``__transitions__``: for a column name, a map of
current state to the states it may move to. ``transition()`` checks the table,
then issues ``UPDATE … SET col = :to WHERE id = :id AND col = :from``. If no
row matched, someone else changed the object first and the caller gets a
``Conflict`` instead of silently overwriting their change. The audit event is
added to the same session, so it commits (or rolls back) with the change.
``transition_many()`` is the same compare-and-set for a batch of rows (the sweep's).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import update

from skileez import clock
from skileez.core.db import among, insert_rows
from skileez.core.errors import Conflict
from skileez.core.models import AuditEvent
from skileez.core.permissions import ALLOWED, Decision, deny
from skileez.extensions import db


def allowed_targets(obj: Any, field: str = "status") -> frozenset[str]:
    table: Mapping[str, Mapping[str, frozenset[str] | set[str]]] = type(obj).__transitions__
    return frozenset(table[field].get(getattr(obj, field), ()))


def can_transition(obj: Any, to_state: str, field: str = "status") -> Decision:
    """Whether the transition table allows the move at all (who and when are the domain's)."""
    if to_state in allowed_targets(obj, field):
        return ALLOWED
    current = str(getattr(obj, field)).replace("_", " ")
    return deny(f"This {getattr(type(obj), '__display_name__', 'item')} is {current}.")


def transition(
    obj: Any,
    to_state: str,
    *,
    actor: Any = None,
    reason: str | None = None,
    field: str = "status",
    expected: str | None = None,
    values: Mapping[str, Any] | None = None,
    where: tuple[Any, ...] = (),
    illegal_message: str | None = None,
    lost_race_message: str | None = None,
) -> AuditEvent:
    """Move ``obj`` to ``to_state`` if nobody else moved it first.

    ``expected`` is the state the caller saw (defaults to the loaded value);
    ``values`` are other columns written in the same UPDATE, so the state and
    its details (who, when, why) can never be half-applied; ``where`` adds
    conditions the row must still meet (a claim that must have expired, say).
    Raises ``Conflict`` for an illegal move or a lost race; never flushes a
    partial change.
    """
    model = type(obj)
    from_state = expected if expected is not None else getattr(obj, field)
    _require_legal(model, field, from_state, to_state, illegal_message)
    column = getattr(model, field)
    changes = _changes(model, field, to_state, values)
    db.session.flush()
    result = db.session.execute(
        update(model)
        .where(model.id == obj.id, column == from_state, *where)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.expire(obj)
        raise Conflict(
            lost_race_message
            or f"This {model.__display_name__} was changed by someone else a moment ago. "
            "Reload the page to see its current state."
        )
    # The UPDATE bypassed the identity map; reload these on next access.
    db.session.expire(obj, list(changes))

    event = AuditEvent(**_audit_row(model, obj.id, field=field, from_state=from_state,
                                    to_state=to_state, actor=actor, reason=reason))
    db.session.add(event)
    db.session.flush()
    return event


def transition_many(
    model: type,
    ids: Collection[int],
    to_state: Any,
    *,
    expected: Any,
    actor: Any = None,
    reason: str | None = None,
    field: str = "status",
    values: Mapping[str, Any] | None = None,
    where: tuple[Any, ...] = (),
) -> list[int]:
    """Move every row of ``ids`` still ``expected`` to ``to_state``; returns the ids it moved.

    The batch form of ``transition`` for the sweep: one
    ``UPDATE … WHERE id IN (…) AND col = :expected RETURNING id`` and one insert of
    the audit events for exactly the ids returned, whatever the batch's size. A row
    someone else moved first (a person, a second sweep) is simply not returned: the
    caller acts on the winners only, so no row is acted on twice, and a lost row
    takes nothing else down with it. ``values`` may hold SQL expressions over the
    row's own columns (``attempts + 1``), written in the same UPDATE.
    """
    _require_legal(model, field, expected, to_state, None)
    if not ids:
        return []
    column = getattr(model, field)
    changes = _changes(model, field, to_state, values)
    db.session.flush()
    won = sorted(db.session.scalars(
        update(model)
        .where(among(model.id, ids), column == expected, *where)
        .values(**changes)
        .returning(model.id)
        .execution_options(synchronize_session=False)
    ))
    if not won:
        return won
    insert_rows(AuditEvent, [
        _audit_row(model, row_id, field=field, from_state=expected, to_state=to_state,
                   actor=actor, reason=reason) for row_id in won])
    expire_loaded(model, won, list(changes))
    return won


def _require_legal(model: type, field: str, from_state: Any, to_state: Any,
                   illegal_message: str | None) -> None:
    if to_state not in model.__transitions__[field].get(from_state, ()):
        raise Conflict(
            illegal_message
            or f"This {model.__display_name__} is {_label(from_state)} and cannot become "
            f"{_label(to_state)}."
        )


def _changes(model: type, field: str, to_state: Any,
             values: Mapping[str, Any] | None) -> dict[str, Any]:
    changes = {field: to_state, **(values or {})}
    if hasattr(model, "updated_at") and "updated_at" not in changes:
        changes["updated_at"] = clock.now()
    if "version" in model.__table__.c:
        # Readers that ask "has it changed?" compare this counter (see Session.version).
        changes["version"] = model.version + 1
    return changes


def _audit_row(model: type, object_id: int, *, field: str, from_state: Any, to_state: Any,
               actor: Any, reason: str | None) -> dict[str, Any]:
    return {"actor_id": getattr(actor, "id", None), "object_type": model.__tablename__,
            "object_id": object_id, "field": field,
            "from_state": None if from_state is None else str(from_state),
            "to_state": str(to_state), "reason": reason, "created_at": clock.now()}


def expire_loaded(model: type, ids: list[int], attributes: list[str]) -> None:
    """The UPDATE bypassed the identity map: objects already loaded reload these on access."""
    session = db.session()
    for row_id in ids:
        obj = session.identity_map.get(session.identity_key(model, (row_id,)))
        if obj is not None:
            session.expire(obj, attributes)


def record_creation(obj: Any, *, actor: Any = None, reason: str | None = None,
                    field: str = "status") -> AuditEvent:
    """Audit the first state of a new object (there is no 'from' state)."""
    db.session.flush()
    event = AuditEvent(**_audit_row(type(obj), obj.id, field=field, from_state=None,
                                    to_state=getattr(obj, field), actor=actor, reason=reason))
    db.session.add(event)
    db.session.flush()
    return event


def record_creation_many(model: type, ids: Collection[int], *, to_state: Any,
                         actor: Any = None, reason: str | None = None,
                         field: str = "status") -> None:
    """``record_creation`` for rows inserted in a batch: one insert of their audit events."""
    if ids:
        insert_rows(AuditEvent, [
            _audit_row(model, row_id, field=field, from_state=None, to_state=to_state,
                       actor=actor, reason=reason) for row_id in ids])


def record_event(obj: Any, *, field: str, from_state: Any, to_state: Any, actor: Any = None,
                 reason: str | None = None) -> AuditEvent:
    """Audit a change that is not a status move (attendance, notes), for the timeline."""
    event = AuditEvent(**_audit_row(type(obj), obj.id, field=field, from_state=from_state,
                                    to_state=to_state, actor=actor, reason=reason))
    db.session.add(event)
    db.session.flush()
    return event


def _label(state: Any) -> str:
    return str(state).replace("_", " ")
