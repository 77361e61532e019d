"""How fast amounts are parsed and formatted: every price on every page goes through these."""

from __future__ import annotations

import timeit

from skileez.core.money import format_money, parse_amount


def main() -> None:
    runs = 20000
    parse = timeit.timeit(lambda: parse_amount("1,249.90", "EUR"), number=runs)
    fmt = timeit.timeit(lambda: format_money(124990, "EUR"), number=runs)
    print(f"   parse_amount: {parse / runs * 1e6:.1f} µs per call")
    print(f"   format_money: {fmt / runs * 1e6:.1f} µs per call")
