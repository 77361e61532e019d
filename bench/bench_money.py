"""How fast amounts are parsed and formatted: every price on every page goes through these."""

from __future__ import annotations

import timeit

from skileez.core.money import format_money, parse_amount


def main() -> None:
    runs = 20000
    parse = timeit.timeit(lambda: parse_amount("1,249.90", "EUR"), number=runs)
    # Each call a new amount, so the remembered answers do not hide Babel's cost; then the
    # same amount again and again, as a page listing one price does.
    amounts = iter(range(10**9))
    fmt = timeit.timeit(lambda: format_money(next(amounts), "EUR"), number=runs)
    repeated = timeit.timeit(lambda: format_money(124990, "EUR"), number=runs)
    print(f"   parse_amount: {parse / runs * 1e6:.1f} µs per call")
    print(f"   format_money: {fmt / runs * 1e6:.1f} µs per call "
          f"({repeated / runs * 1e6:.1f} µs for an amount already formatted)")
