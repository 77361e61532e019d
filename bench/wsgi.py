"""The app as gunicorn serves it to the benchmarks: settings from BENCH_APP_CONFIG (JSON,
written by ``bench.support.gunicorn``), plus ``/bench/bare``, the cheapest answer the same
app and middleware can give, which the page figures are compared with."""

import json
import os

from skileez import create_app


def bare():
    return "ok"


bare.skileez_public = True  # reachable without signing in, like any public view

app = create_app(json.loads(os.environ["BENCH_APP_CONFIG"]))
app.add_url_rule("/bench/bare", "bench_bare", bare)
