"""Password hashing with Argon2id.

Werkzeug's default scrypt (N = 2^15) is below OWASP's minimum, so hashes are
Argon2id with cost parameters from config. Old hashes are upgraded on the next
successful sign-in when the parameters are raised.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app


def _hasher() -> PasswordHasher:
    config = current_app.config
    key = (config["ARGON2_TIME_COST"], config["ARGON2_MEMORY_COST"],
           config["ARGON2_PARALLELISM"])
    cache = current_app.extensions.setdefault("skileez_hashers", {})
    if key not in cache:
        cache[key] = PasswordHasher(time_cost=key[0], memory_cost=key[1], parallelism=key[2])
    return cache[key]


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


# A hash to verify against when the account does not exist, so a sign-in for an
# unknown email takes as long as one for a known email.
_DUMMY = {}


def burn_equivalent_time(password: str) -> None:
    hasher = _hasher()
    key = id(hasher)
    if key not in _DUMMY:
        _DUMMY[key] = hasher.hash("not-a-real-password")
    verify_password(_DUMMY[key], password)
