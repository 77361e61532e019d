"""Run every benchmark in bench/ and print its figures (``make bench``), then the summary
lines (``name: value``) a script can compare between runs.

``python -m bench NAME…`` runs only the named benchmarks (``slots``, ``booking``, …).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

from bench import support


def main(only: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)])
                   if m.name.startswith("bench_"))
    if only:
        names = [name for name in names if name.removeprefix("bench_") in only]
    reasons: dict[str, str] = {}
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name} ==", flush=True)
        started = time.perf_counter()
        try:
            module.main()
        except support.Skip as skip:
            print(f"   skipped: {skip}")
            for key in getattr(module, "SUMMARY", ()):
                reasons[key] = str(skip)
        print(f"   ({time.perf_counter() - started:.2f} s in all)", flush=True)
    print("== summary ==")
    for line in support.summary_lines(reasons):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
