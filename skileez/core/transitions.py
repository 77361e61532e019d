"""The one way any status changes.

Each stateful model declares ``__transitions__``: for a column name, a map of
current state to the states it may move to. ``transition()`` checks the table,
then issues ``UPDATE … SET col = :to WHERE id = :id AND col = :from``. If no
row matched, someone else changed the object first and the caller gets a
``Conflict`` instead of silently overwriting their change. The audit event is
added to the same session, so it commits (or rolls back) with the change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import update

from skileez import clock
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
    targets = model.__transitions__[field].get(from_state, ())
    if to_state not in targets:
        raise Conflict(
            illegal_message
            or f"This {model.__display_name__} is {_label(from_state)} and cannot become "
            f"{_label(to_state)}."
        )

    column = getattr(model, field)
    changes = {field: to_state, **(values or {})}
    if hasattr(model, "updated_at") and "updated_at" not in changes:
        changes["updated_at"] = clock.now()
    if "version" in model.__table__.c:
        # Readers that ask "has it changed?" compare this counter (see Session.version).
        changes["version"] = model.version + 1
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

    event = AuditEvent(
        actor_id=getattr(actor, "id", None),
        object_type=model.__tablename__,
        object_id=obj.id,
        field=field,
        from_state=str(from_state),
        to_state=str(to_state),
        reason=reason,
        created_at=clock.now(),
    )
    db.session.add(event)
    db.session.flush()
    return event


def record_creation(obj: Any, *, actor: Any = None, reason: str | None = None,
                    field: str = "status") -> AuditEvent:
    """Audit the first state of a new object (there is no 'from' state)."""
    db.session.flush()
    event = AuditEvent(
        actor_id=getattr(actor, "id", None),
        object_type=type(obj).__tablename__,
        object_id=obj.id,
        field=field,
        from_state=None,
        to_state=str(getattr(obj, field)),
        reason=reason,
        created_at=clock.now(),
    )
    db.session.add(event)
    db.session.flush()
    return event


def record_event(obj: Any, *, field: str, from_state: Any, to_state: Any, actor: Any = None,
                 reason: str | None = None) -> AuditEvent:
    """Audit a change that is not a status move (attendance, notes), for the timeline."""
    event = AuditEvent(actor_id=getattr(actor, "id", None), object_type=type(obj).__tablename__,
                       object_id=obj.id, field=field,
                       from_state=None if from_state is None else str(from_state),
                       to_state=str(to_state), reason=reason, created_at=clock.now())
    db.session.add(event)
    db.session.flush()
    return event


def _label(state: Any) -> str:
    return str(state).replace("_", " ")
