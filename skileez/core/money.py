"""Money as integer minor units.

Amounts are never floats: a user's "49.90" is parsed as a Decimal and scaled
by the currency's ISO 4217 exponent (2 for EUR, 0 for JPY, 3 for KWD), and
anything with more decimals than the currency has is refused rather than
rounded, so what the user typed is exactly what is stored.
"""

from __future__ import annotations

import functools
import re
from decimal import ROUND_HALF_EVEN, Decimal

from babel.numbers import format_currency, get_currency_precision

# The currencies Skileez accepts. Their minor-unit exponents come from the CLDR data
# babel ships (the same figures as ISO 4217), so there is no second table to keep in step.
SUPPORTED_CURRENCIES: tuple[str, ...] = (
    "EUR", "USD", "GBP", "CHF", "JPY", "CAD", "AUD",
    "SEK", "NOK", "DKK", "PLN", "CZK", "KRW", "KWD",
)

CURRENCY_EXPONENTS: dict[str, int] = {
    code: get_currency_precision(code) for code in SUPPORTED_CURRENCIES
}


class MoneyError(ValueError):
    """The text is not an amount in that currency; the message says why."""


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency.upper()]
    except KeyError:
        raise MoneyError(f"{currency} is not a currency Skileez supports.") from None


# Far above any real session price, far below a 64-bit column's limit.
MAX_MINOR_UNITS = 10**11


def parse_amount(text: str, currency: str) -> int:
    """Parse what a person typed ("49.90", "49,90", "1,250.50", "5000") into minor units.

    A single comma followed by one or two digits is a decimal comma; any other
    comma separates thousands.
    """
    digits = exponent(currency)
    cleaned = (text or "").strip()[:40].replace(" ", "").replace("\u00a0", "")
    if not cleaned:
        raise MoneyError("Enter an amount.")
    if "." not in cleaned and re.fullmatch(r"\d+,\d{1,2}", cleaned):
        cleaned = cleaned.replace(",", ".")
    elif re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", cleaned):
        cleaned = cleaned.replace(",", "")
    if not re.fullmatch(r"\d+(\.\d+)?|\.\d+", cleaned):
        raise MoneyError("Enter an amount such as 49.90.")
    value = Decimal(cleaned)
    places = -value.as_tuple().exponent
    if places > digits and value != value.quantize(Decimal(1).scaleb(-digits)):
        if digits == 0:
            raise MoneyError(f"{currency.upper()} has no minor unit; enter a whole number.")
        raise MoneyError(f"{currency.upper()} amounts have at most {digits} decimal places.")
    minor = int(value.scaleb(digits).to_integral_value())
    if minor > MAX_MINOR_UNITS:
        raise MoneyError("That amount is too large.")
    return minor


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


@functools.lru_cache(maxsize=4096)
def format_money(minor: int, currency: str, locale: str = "en_US") -> str:
    """Show an amount with its currency, e.g. "€49.90", "¥5,000", "CHF12.00".

    Remembered: a page or a sweep batch says the same few prices hundreds of times, and
    Babel's formatting costs far more than looking one up.
    """
    return format_currency(to_decimal(minor, currency), currency.upper(), locale=locale)


def input_value(minor: int, currency: str) -> str:
    """The amount as a plain number for a form field ("49.90", "5000")."""
    return f"{to_decimal(minor, currency):f}"


def share(minor: int, fraction: Decimal) -> int:
    """A fraction of an amount, rounded half-even to a whole minor unit."""
    return int((Decimal(minor) * fraction).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
