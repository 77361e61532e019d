"""Every number from SPEC's policy table, in one object.

Rules read these values instead of literals so an operator can change a
default through configuration (``POLICY`` in the app config, or
``SKILEEZ_POLICY_<NAME>`` in the environment) without touching code.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from flask import current_app


def _hours(n: float) -> timedelta:
    return timedelta(hours=n)


def _minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@dataclass(frozen=True)
class Policy:
    payment_hold: timedelta = _minutes(15)
    proposal_expiry: timedelta = timedelta(days=7)
    reschedule_notice_coach: timedelta = _hours(48)
    reschedule_notice_student: timedelta = _hours(24)
    reschedule_notice_student_late_floor: timedelta = _hours(10)
    reschedule_new_time_min_lead: timedelta = _hours(1)
    reschedule_reason_min_chars: int = 10
    reschedule_reason_max_chars: int = 500
    reschedule_response_window: timedelta = _hours(24)
    reschedule_response_cap_before_start: timedelta = _hours(1)
    start_window_before: timedelta = _minutes(5)
    start_window_after: timedelta = _minutes(15)
    mark_missed_after_start: timedelta = _minutes(15)
    auto_close_after_end: timedelta = _minutes(30)
    late_cancellation_window: timedelta = _hours(24)
    refund_student_cancels_early: Decimal = Decimal("1")
    refund_student_cancels_late: Decimal = Decimal("0")
    refund_coach_cancels: Decimal = Decimal("1")
    refund_missed_by_student: Decimal = Decimal("1")
    refund_missed_by_coach: Decimal = Decimal("1")
    refund_missed_unattended: Decimal = Decimal("1")
    escrow_release_delay: timedelta = _hours(24)
    platform_fee: Decimal = Decimal("0.10")
    reminders: tuple[timedelta, ...] = field(default=(_hours(24), _hours(1)))
    completion_notes_max_chars: int = 1000
    rating_feedback_max_chars: int = 2000
    proposal_message_max_chars: int = 1000
    proposal_sessions_min: int = 1
    proposal_sessions_max: int = 50
    # A person's name: one line, at most this many characters.
    name_max_chars: int = 100
    # Offering price per session, in the currency's major unit (euros, yen); a currency
    # may have its own bounds: {"JPY": (100, 15_000_000)} or "JPY=100:15000000,KRW=…".
    offering_price_min: int = 1
    offering_price_max: int = 100_000
    offering_price_per_currency: dict = field(default_factory=dict)
    # Not in SPEC's table: the grid open slots are offered on, from each rule's start.
    slot_step: timedelta = _minutes(30)
    # Not in SPEC's table: how many due rows each deadline handler acts on per batch (one
    # transaction), and how long one sweep keeps taking batches before it leaves the rest.
    sweep_batch: int = 500
    sweep_time_budget_seconds: int = 40
    # Not in SPEC's table: how far back and ahead a private calendar feed reaches.
    calendar_feed_past: timedelta = timedelta(days=90)
    calendar_feed_ahead: timedelta = timedelta(days=365)
    # Not in SPEC's table: how often the sweep runs the ledger invariant check.
    ledger_check_interval: timedelta = _minutes(10)
    # Not in SPEC's table: when the nightly comparison with Stripe is due (after midnight
    # UTC), how much each run overlaps the previous one, and how far back the first looks.
    reconciliation_time: timedelta = _hours(3)
    reconciliation_overlap: timedelta = timedelta(days=3)
    reconciliation_lookback: timedelta = timedelta(days=90)

    def offering_price_bounds(self, currency: str) -> tuple[int, int]:
        """(lowest, highest) price in the currency's major unit."""
        low, high = self.offering_price_per_currency.get(
            currency, (self.offering_price_min, self.offering_price_max))
        return int(low), int(high)

    @classmethod
    def from_mapping(cls, values: dict) -> Policy:
        """Build a policy from config values, coercing strings from the environment.

        Durations may be given as ``timedelta`` or as a number of minutes;
        shares as ``Decimal``, float or string ("0.10").
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        defaults = cls()
        kwargs = {}
        for name, value in values.items():
            if name not in fields:
                raise KeyError(f"Unknown policy setting {name!r}")
            kwargs[name] = _coerce(value, getattr(defaults, name))
        return cls(**kwargs)

    @classmethod
    def from_environment(cls, environ: dict | None = None) -> dict:
        """Collect ``SKILEEZ_POLICY_<NAME>`` variables into a mapping."""
        environ = os.environ if environ is None else environ
        prefix = "SKILEEZ_POLICY_"
        return {
            key[len(prefix):].lower(): value
            for key, value in environ.items()
            if key.startswith(prefix)
        }


def _coerce(value, default):
    if isinstance(default, timedelta):
        return value if isinstance(value, timedelta) else timedelta(minutes=float(value))
    if isinstance(default, dict):
        if isinstance(value, str):
            pairs = (item.split("=", 1) for item in value.split(",") if item.strip())
            value = {code.strip().upper(): tuple(int(n) for n in bounds.split(":"))
                     for code, bounds in pairs}
        return {code: (int(low), int(high)) for code, (low, high) in dict(value).items()}
    if isinstance(default, Decimal):
        return Decimal(str(value))
    if isinstance(default, bool):
        return str(value).lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(value)
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        return tuple(v if isinstance(v, timedelta) else timedelta(minutes=float(v))
                     for v in value)
    return value


def get_policy() -> Policy:
    """The policy of the running app (built once in ``create_app``)."""
    return current_app.extensions["skileez_policy"]
