"""Demo data for `make run`: enough people to click through every page.

Loaded only into an empty database. Later issues extend ``seed()`` with
offerings, contracts, sessions and payments.
"""

from __future__ import annotations

from skileez.auth.operations import create_user

DEMO_PASSWORD = "skileez-demo-2026"

DEMO_ACCOUNTS = [
    {"role": "admin", "email": "admin@skileez.test", "name": "Alex Admin",
     "timezone": "Europe/London"},
    {"role": "coach", "email": "clara.coach@skileez.test", "name": "Clara Schmidt",
     "timezone": "Europe/Berlin"},
    {"role": "coach", "email": "marcus.coach@skileez.test", "name": "Marcus Reed",
     "timezone": "America/New_York"},
    {"role": "coach", "email": "aiko.coach@skileez.test", "name": "Aiko Tanaka",
     "timezone": "Asia/Tokyo"},
    {"role": "student", "email": "sam.student@skileez.test", "name": "Sam Rivera",
     "timezone": "Europe/Madrid"},
    {"role": "student", "email": "priya.student@skileez.test", "name": "Priya Nair",
     "timezone": "Asia/Kolkata"},
    {"role": "student", "email": "leo.student@skileez.test", "name": "Leo Martin",
     "timezone": "America/Los_Angeles"},
]
for _account in DEMO_ACCOUNTS:
    _account["password"] = DEMO_PASSWORD


def seed() -> dict[str, object]:
    users = {}
    for account in DEMO_ACCOUNTS:
        users[account["email"]] = create_user(
            name=account["name"], email=account["email"], password=account["password"],
            role=account["role"], timezone=account["timezone"],
            welcome=account["role"] != "admin",
        )
    return users
