"""What each kind of notification says, in the app and by email.

A kind's ``summary`` is the one line shown in the bell and the notifications
page; its email bodies live in ``templates/emails/<kind>.txt`` and ``.html``,
or, for kinds without their own, the generic email built from summary and detail.
All are rendered from the payload, so the same notification reads the same
everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    subject: str
    summary: str
    # Endpoint the notification links to; payload keys fill its arguments.
    endpoint: str | None = None
    endpoint_args: tuple[str, ...] = ()
    email: bool = True
    # Extra paragraph for the email (Jinja, same context as the summary).
    detail: str = ""


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise LookupError(f"Unknown notification kind {name!r}") from None


register(Kind(
    name="welcome",
    subject="Welcome to Skileez, {{ recipient.name }}",
    summary="Welcome to Skileez! {% if payload.role == 'coach' %}Set up your offerings "
            "and availability so students can find you.{% else %}Find a coach and "
            "propose your first sessions.{% endif %}",
    endpoint="dashboard.index",
))


register(Kind(
    name="proposal_received",
    subject="New proposal from {{ payload.student_name }}: {{ payload.sessions_count }} × "
            "{{ payload.offering_title }}",
    summary="{{ payload.student_name }} proposed {{ payload.sessions_count }} session"
            "{{ 's' if payload.sessions_count != 1 }} of {{ payload.offering_title }}. "
            "Please answer by {{ payload.expires_at|local_in(recipient.timezone) }}.",
    detail="{% if payload.message %}Their message: “{{ payload.message }}”{% endif %}",
    endpoint="contracts.proposal", endpoint_args=("proposal_id",),
))
register(Kind(
    name="proposal_accepted",
    subject="{{ payload.coach_name }} accepted your proposal",
    summary="{{ payload.coach_name }} accepted your proposal of {{ payload.sessions_count }} "
            "session{{ 's' if payload.sessions_count != 1 }} of {{ payload.offering_title }}. "
            "Your contract is ready: you can book sessions now.",
    detail="{% if payload.response %}Their note: “{{ payload.response }}”{% endif %}",
    endpoint="contracts.detail", endpoint_args=("contract_id",),
))
register(Kind(
    name="proposal_declined",
    subject="{{ payload.coach_name }} declined your proposal",
    summary="{{ payload.coach_name }} declined your proposal for {{ payload.offering_title }}.",
    detail="{% if payload.response %}Their note: “{{ payload.response }}”{% endif %}",
    endpoint="contracts.proposal", endpoint_args=("proposal_id",),
))
register(Kind(
    name="proposal_withdrawn",
    subject="{{ payload.student_name }} withdrew their proposal",
    summary="{{ payload.student_name }} withdrew their proposal for "
            "{{ payload.offering_title }}.",
    endpoint="contracts.proposal", endpoint_args=("proposal_id",),
))
register(Kind(
    name="contract_ended",
    subject="{% if recipient.id == payload.ended_by_id %}You ended{% else %}"
            "{{ payload.ended_by }} ended{% endif %} the contract {{ payload.contract_title }}",
    summary="{% if recipient.id == payload.ended_by_id %}You{% else %}{{ payload.ended_by }}"
            "{% endif %} ended the contract {{ payload.contract_title }}"
            "{% if payload.refunds %}: {{ payload.refunds|length }} booked session"
            "{{ 's' if payload.refunds|length != 1 }} cancelled, {{ payload.total_refund }} "
            "refunded to {{ payload.student_name }}{% endif %}.",
    detail="Reason: “{{ payload.reason }}”",
    endpoint="contracts.detail", endpoint_args=("contract_id",),
))
register(Kind(
    name="contract_paused",
    subject="{{ payload.coach_name }} paused new bookings on {{ payload.contract_title }}",
    summary="{{ payload.coach_name }} paused new bookings on the contract "
            "{{ payload.contract_title }}. Sessions already booked go ahead as planned.",
    endpoint="contracts.detail", endpoint_args=("contract_id",),
))
register(Kind(
    name="contract_resumed",
    subject="You can book sessions of {{ payload.contract_title }} again",
    summary="{{ payload.coach_name }} resumed bookings on the contract "
            "{{ payload.contract_title }}: you can book sessions again.",
    endpoint="contracts.detail", endpoint_args=("contract_id",),
))
register(Kind(
    name="proposal_expired",
    subject="A proposal for {{ payload.offering_title }} expired",
    summary="The proposal of {{ payload.sessions_count }} session"
            "{{ 's' if payload.sessions_count != 1 }} of {{ payload.offering_title }} "
            "({{ payload.student_name }} with {{ payload.coach_name }}) expired without an "
            "answer.",
    endpoint="contracts.proposal", endpoint_args=("proposal_id",),
))


_WHEN = "{{ payload.starts_at|local_in(recipient.timezone) }}"
# Where the money stands when the email is written, in the words every page uses
# (skileez/payments/words.py), so an email never contradicts the session page.
_MONEY = ("{% set money = money_words(payload.session_id, recipient) %}"
          "{% if money %}{{ money.headline }}: {{ money.detail }}{% endif %}")

register(Kind(
    name="payment_received",
    subject="Payment received: your session on " + _WHEN + " is booked",
    summary="We received your payment of {{ payload.amount }}. Your session of "
            "{{ payload.contract_title }} with {{ payload.coach_name }} on " + _WHEN +
            " is booked. The money is held until the session is done.",
    detail=_MONEY,
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="session_booked",
    subject="New session booked: {{ payload.student_name }} on " + _WHEN,
    summary="{{ payload.student_name }} booked and paid a session of "
            "{{ payload.contract_title }} on " + _WHEN + ".",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="booking_expired",
    subject="Your booking hold expired",
    summary="The hold on your session of {{ payload.contract_title }} on " + _WHEN +
            " expired before payment, so the time was released. Book again if it is still "
            "free.",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    # A session booked with the rest of a contract whose saved card could not be charged.
    name="saved_card_not_charged",
    subject="Action needed: pay for your session on " + _WHEN,
    summary="{% if payload.needs_action %}Your bank asks you to confirm the payment of "
            "{{ payload.amount }}{% else %}We could not charge {{ payload.amount }} to your "
            "saved card{% endif %} for your session of {{ payload.contract_title }} with "
            "{{ payload.coach_name }} on " + _WHEN + ". The time is held for you until "
            "{{ payload.pay_until|local_in(recipient.timezone) }}: pay from the link to keep "
            "it.",
    detail="{% if payload.reason %}What the bank said: “{{ payload.reason }}”{% endif %} "
           "Your other sessions are not affected.",
    endpoint="payments.pay", endpoint_args=("payment_id",),
))
register(Kind(
    name="booking_released",
    subject="{{ payload.coach_name }} is away: your unpaid booking was released",
    summary="{{ payload.coach_name }} is away at the time of your session of "
            "{{ payload.contract_title }} on " + _WHEN + ", so the booking was released "
            "before you paid. Nothing was charged. Book another time if you still want it.",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="refund_issued",
    subject="Refund of {{ payload.amount }} issued",
    summary="We refunded {{ payload.amount }} for your session of "
            "{{ payload.contract_title }} on " + _WHEN + ". Reason: {{ payload.reason }}",
    detail=_MONEY + " Refunds reach your card within 5–10 business days.",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    # To the coach: money of their session went back to the student without them (a
    # refund made in Stripe, say), so what they will be paid shrinks or is nothing.
    name="payment_refunded",
    subject="{{ payload.amount }} of your session's payment was refunded",
    summary="{{ payload.amount }} of the payment for the session with "
            "{{ payload.student_name }} on " + _WHEN + " was refunded to them "
            "({{ payload.reason }}). {% if payload.remaining %}The rest, "
            "{{ payload.remaining }}, is still held and released to you (less the fee) as "
            "usual.{% else %}Nothing of this payment will be paid out to you.{% endif %}",
    detail=_MONEY,
    endpoint="payments.index",
))
register(Kind(
    name="escrow_released",
    subject="{{ payload.amount }} released to you",
    summary="{{ payload.amount }} for the session with {{ payload.student_name }} on " + _WHEN
            + " was released from escrow and is on its way to you.",
    detail=_MONEY,
    endpoint="payments.index",
))
register(Kind(
    name="dispute_opened",
    subject="A dispute was opened on the session of " + _WHEN,
    summary="{{ 'You' if payload.yours else payload.student_name }} opened a dispute about "
            "the session of "
            "{{ payload.contract_title }} on " + _WHEN + ". The payment is on hold until an "
            "admin resolves it.",
    detail="Reason given: “{{ payload.reason }}”{% if payload.can_answer %}"
           " You can give your side from the session page until an admin decides.{% endif %}",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="dispute_resolved",
    subject="The dispute on the session of " + _WHEN + " was resolved",
    summary="The dispute about the session of {{ payload.contract_title }} on " + _WHEN +
            " was resolved: {{ {'release': 'the payment goes to the coach', 'refund': "
            "'the student is refunded in full', 'partial': 'part is refunded, the rest goes "
            "to the coach'}[payload.resolution] }}.",
    detail="{% if payload.student_gets %}{{ payload.student_name }} gets "
           "{{ payload.student_gets }} back; {{ payload.coach_name }} gets "
           "{{ payload.coach_gets }}. {% endif %}"
           "{% if payload.note %}The admin's reason: “{{ payload.note }}” {% endif %}" + _MONEY,
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="dispute_answered",
    subject="{{ payload.coach_name }} {{ 'edited their answer to' if payload.edited "
            "else 'answered' }} your dispute",
    summary="{{ payload.coach_name }} {{ 'edited their answer to' if payload.edited "
            "else 'answered' }} your dispute about the session of {{ payload.contract_title }} "
            "on " + _WHEN + ". An admin reads both sides before deciding.",
    detail="Their answer: “{{ payload.answer }}”",
    endpoint="payments.dispute", endpoint_args=("payment_id",),
))

# --- card disputes at the bank and transfer reversals (issue 11) ---------------------
register(Kind(
    name="chargeback_opened",
    subject="A card dispute was opened on the session of " + _WHEN,
    summary="The student's bank disputes the payment for the session of "
            "{{ payload.contract_title }} on " + _WHEN + " ({{ payload.reason }}). "
            "{% if payload.released %}The bank decides; an admin answers it with the "
            "session's record.{% else %}The payment is on hold until it is decided.{% endif %}",
    detail=_MONEY,
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="chargeback_withdrawn",
    subject="{{ payload.amount }} taken back by a card dispute",
    summary="The student's bank took back the payment for the session with "
            "{{ payload.student_name }} on " + _WHEN + ". Your share, {{ payload.amount }}, "
            "is taken back from your payouts while the bank decides; if the bank decides "
            "for you, it is owed to you again.",
    endpoint="payments.index",
))
register(Kind(
    name="chargeback_closed",
    subject="The card dispute on the session of " + _WHEN + " was "
            "{{ 'won' if payload.won else 'lost' }}",
    summary="The bank decided the card dispute about the session of "
            "{{ payload.contract_title }} on " + _WHEN + ": {% if payload.won %}the payment "
            "stands{% if payload.released %} and the coach's share is owed to them again"
            "{% endif %}{% else %}the payment of {{ payload.amount }} went back to the card"
            "{% if not payload.released %} and is not paid to the coach{% endif %}{% endif %}.",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="payout_reversed",
    subject="A payout of {{ payload.amount }} was reversed",
    summary="{{ payload.amount }} paid to you for the session with {{ payload.student_name }} "
            "on " + _WHEN + " was taken back from your Stripe account"
            "{% if payload.chargeback %} because the student's bank took the payment back"
            "{% else %}: {{ payload.reason }}{% endif %}.",
    endpoint="payments.index",
))

register(Kind(
    name="session_confirmed",
    subject="{{ payload.coach_name }} confirmed your session on " + _WHEN,
    summary="{{ payload.coach_name }} confirmed the session of {{ payload.contract_title }} on "
            + _WHEN + ".",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="session_started",
    subject="{{ payload.started_by }} started your session — join now",
    summary="{{ payload.started_by }} started the session of {{ payload.contract_title }}. "
            "The meeting room is open: join from the session page.",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="session_reminder",
    subject="Reminder: {{ payload.contract_title }} {{ payload.when_text }}",
    summary="Reminder: your session of {{ payload.contract_title }} with "
            "{% if recipient.id == payload.coach_id %}{{ payload.student_name }}"
            "{% else %}{{ payload.coach_name }}{% endif %} starts " + _WHEN +
            " ({{ payload.when_text }}).",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="reschedule_requested",
    subject="{{ payload.requested_by }} asks to move your session of " + _WHEN,
    summary="{{ payload.requested_by }} asks to move the session of " + _WHEN + " to "
            "{{ payload.proposed_start|local_in(recipient.timezone) }}. Please answer by "
            "{{ payload.deadline|local_in(recipient.timezone) }}.",
    detail="Their reason: “{{ payload.reason }}”",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="reschedule_approved",
    subject="Your session was moved to {{ payload.new_start|local_in(recipient.timezone) }}",
    summary="{{ payload.decided_by }} agreed: the session of {{ payload.contract_title }} now "
            "starts {{ payload.new_start|local_in(recipient.timezone) }}.",
    detail="{% if payload.note %}Their note: “{{ payload.note }}”{% endif %}",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="reschedule_declined",
    subject="Your reschedule request was declined",
    summary="{{ payload.decided_by }} declined moving the session of " + _WHEN +
            "; it stays at that time.",
    detail="{% if payload.note %}Their note: “{{ payload.note }}”{% endif %}",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="reschedule_withdrawn",
    subject="{{ payload.requested_by }} withdrew their reschedule request",
    summary="{{ payload.requested_by }} withdrew the request to move the session of " + _WHEN +
            "; it stays at that time.",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="reschedule_auto_decided",
    subject="Reschedule request {{ 'approved' if payload.outcome == 'auto_approved' "
            "else 'declined' }} automatically",
    summary="{{ payload.why }} The session of {{ payload.contract_title }} "
            "{% if payload.outcome == 'auto_approved' %}now starts{% else %}stays at{% endif %} "
            "{{ payload.new_start|local_in(recipient.timezone) }}.",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="session_cancelled",
    subject="Session on " + _WHEN + " cancelled",
    summary="{{ payload.cancelled_by }} cancelled the session of {{ payload.contract_title }} "
            "on " + _WHEN + "{% if payload.late %} (late){% endif %}."
            "{% if payload.refund %} Refund to the student: {{ payload.refund }}.{% endif %}",
    detail="{% if payload.reason %}Reason: “{{ payload.reason }}”{% endif %}",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="session_completed",
    subject="How was your session? Rate it",
    summary="The session of {{ payload.contract_title }} on " + _WHEN + " is complete. "
            "How did it go? Leave a rating.",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
register(Kind(
    name="session_missed",
    subject="Session on " + _WHEN + " marked as missed",
    summary="The session of {{ payload.contract_title }} on " + _WHEN + " was marked as "
            "missed{% if payload.missed_by == 'unattended' %}: nobody started it"
            "{% else %} by the {{ payload.missed_by }}{% endif %}.",
    detail="{% if payload.reason %}Reason given: “{{ payload.reason }}”{% endif %}",
    endpoint="sessions.detail", endpoint_args=("session_id",),
))
