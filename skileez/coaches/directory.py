"""The public coach directory: who is listed, how they are searched and sorted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, exists, func, or_, select
from sqlalchemy.orm import contains_eager

from skileez.auth.models import User
from skileez.coaches.availability import coaches_next_open_slots
from skileez.coaches.models import CoachProfile, CoachSubject, Offering
from skileez.core.http import like_pattern
from skileez.core.money import CURRENCY_EXPONENTS
from skileez.extensions import db

SORTS = {
    "name": "Name",
    "price_asc": "Price: low to high",
    "price_desc": "Price: high to low",
    "rating": "Best rated",
}

# Prices in different currencies are compared in a common number of decimals so that
# ¥5,000 is not sorted next to €50.00 as if 5000 and 5000 were the same; amounts are
# not converted between currencies: filter by currency to compare like with like.
_COMMON_DECIMALS = 3
_normalised_price = Offering.price_minor * case(
    {code: 10 ** (_COMMON_DECIMALS - exp) for code, exp in CURRENCY_EXPONENTS.items()},
    value=Offering.currency, else_=1)


@dataclass
class DirectoryFilters:
    query: str = ""
    currency: str = ""
    min_price: int | None = None  # minor units of ``currency``
    max_price: int | None = None
    sort: str = "name"


def directory_statement(filters: DirectoryFilters):
    offering_conditions = [Offering.coach_id == User.id, Offering.status == "active"]
    if filters.currency:
        offering_conditions.append(Offering.currency == filters.currency)
        if filters.min_price is not None:
            offering_conditions.append(Offering.price_minor >= filters.min_price)
        if filters.max_price is not None:
            offering_conditions.append(Offering.price_minor <= filters.max_price)
    from_price = select(func.min(_normalised_price)).where(*offering_conditions) \
        .correlate(User).scalar_subquery()
    statement = (
        select(User)
        .join(CoachProfile, CoachProfile.user_id == User.id)
        # Each card shows the profile and its subjects: loaded with the page, not per card.
        .options(contains_eager(User.coach_profile).selectinload(CoachProfile.subjects))
        .where(User.role == "coach", User.status == "active",
               exists().where(*offering_conditions))
    )
    if filters.query:
        pattern = like_pattern(filters.query)
        statement = statement.where(or_(
            func.lower(User.name).like(pattern, escape="\\"),
            func.lower(CoachProfile.headline).like(pattern, escape="\\"),
            exists().where(CoachSubject.profile_id == CoachProfile.id,
                           CoachSubject.name.like(pattern, escape="\\")),
        ))
    if filters.sort == "price_asc":
        statement = statement.order_by(from_price.asc(), User.name, User.id)
    elif filters.sort == "price_desc":
        statement = statement.order_by(from_price.desc(), User.name, User.id)
    elif filters.sort == "rating":
        statement = statement.order_by(CoachProfile.rating_average.desc().nulls_last(),
                                       CoachProfile.rating_count.desc(), User.name, User.id)
    else:
        statement = statement.order_by(User.name, User.id)
    return statement


@dataclass
class CoachCard:
    coach: User
    profile: CoachProfile
    from_prices: list[tuple[int, str]]  # (minor, currency), cheapest first per currency
    next_slot: datetime | None


def coach_cards(coaches: list[User], currency: str = "") -> list[CoachCard]:
    """The directory's cards for a page of coaches, in a fixed number of queries: their
    offerings at once, and the slot engine fed for all of them together."""
    offerings: dict[int, list[Offering]] = {coach.id: [] for coach in coaches}
    for offering in db.session.scalars(
            select(Offering).where(Offering.coach_id.in_(list(offerings)),
                                   Offering.status == "active")
            .order_by(Offering.price_minor, Offering.id)):
        offerings[offering.coach_id].append(offering)
    shortest = {coach: timedelta(minutes=min(o.duration_minutes for o in offerings[coach.id]))
                for coach in coaches if offerings[coach.id]}
    next_slots = coaches_next_open_slots(shortest)
    cards = []
    for coach in coaches:
        cheapest: dict[str, int] = {}
        for offering in offerings[coach.id]:
            if currency and offering.currency != currency:
                continue
            cheapest[offering.currency] = min(cheapest.get(offering.currency,
                                                           offering.price_minor),
                                              offering.price_minor)
        cards.append(CoachCard(coach=coach, profile=coach.coach_profile,
                               from_prices=sorted(((v, k) for k, v in cheapest.items()),
                                                  key=lambda p: p[1]),
                               next_slot=next_slots.get(coach.id)))
    return cards


def active_offerings(coach_id: int) -> list[Offering]:
    return list(db.session.scalars(
        select(Offering).where(Offering.coach_id == coach_id, Offering.status == "active")
        .order_by(Offering.price_minor, Offering.id)))
