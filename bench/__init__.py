"""Benchmarks: each module named ``bench_*.py`` here has a ``main()`` that prints figures."""
