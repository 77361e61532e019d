"""Run every benchmark in bench/ and print its figures (``make bench``)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)])
                   if m.name.startswith("bench_"))
    if not names:
        print("No benchmarks yet.")
        return 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name} ==")
        started = time.perf_counter()
        module.main()
        print(f"   ({time.perf_counter() - started:.2f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
