"""What coaches do when an account changes: a new coach gets a profile straight away."""

from __future__ import annotations

from skileez.coaches.operations import profile_for
from skileez.core.events import listen


@listen("account_created")
def create_coach_profile(*, user) -> None:
    if user.role == "coach":
        profile_for(user)
