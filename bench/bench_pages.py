"""What every page costs at real size: SQL statements and milliseconds, small against large.

Each GET route of the app's url_map is opened by a signed-in student, coach and admin
(the busy pair of bench/dataset.py, whose 5,000 sessions make any page that loads "all of
them" show it, and the admin), with the ids it needs taken from the data set; a route
that answers a role with anything but 200 is not a page that role opens. Where the same
route answers an htmx request with a fragment, the fragment is measured too. Each page is
asked once to warm up, then about ``SAMPLES`` times one after the other through gunicorn
on PostgreSQL; the statements are counted in the gunicorn worker (bench/wsgi.py).

Marked in the table: more than ``MAX_STATEMENTS`` statements, a median over
``MAX_MEDIAN_MS`` on the large set, or more statements on large than on small (a page
whose cost grows with data). Then, on the large set, every SELECT one request of each
page runs is given to EXPLAIN, and sequential scans of tables over ``BIG_TABLE`` rows are
printed with the page and the statement.
"""

from __future__ import annotations

import html
import re
import statistics
import time
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text

from bench import dataset, support

SUMMARY = ("pages over budget", "slowest page")
SAMPLES = 15
# A slow page gets fewer: samples stop after SECONDS_PER_PAGE once MIN_SAMPLES are in, and
# a page whose warm-up alone took that long is far over budget: MIN_SAMPLES, no more.
MIN_SAMPLES = 3
SECONDS_PER_PAGE = 3.0
MAX_STATEMENTS = 10
MAX_MEDIAN_MS = 150
BIG_TABLE = 10_000
ROLES = ("student", "coach", "admin")
# Routes that are files, not pages, or belong to the bench itself.
NOT_PAGES = ("static", "bootstrap.static", "vendor.static", "core.favicon", "core.health",
             "bench_bare")
HTMX = {"HX-Request": "true"}


@dataclass
class Page:
    """One page (or fragment) as one role opens it, with its figures per data set size."""

    rule: str
    role: str
    url: str
    fragment: bool = False
    # For a route opened by a link (with a query string): the route of the linking page.
    linked_from: str | None = None
    statements: dict[str, int] = field(default_factory=dict)
    median_ms: dict[str, float] = field(default_factory=dict)
    worst_ms: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.rule + (" [htmx]" if self.fragment else "")

    @property
    def key(self) -> tuple:
        return self.rule, self.role, self.fragment


#: Every route argument ``ids_for`` gives a value for (the suite checks that each GET route
#: asks only for these, so a new route cannot stop the benchmark halfway).
ARGUMENTS = frozenset({"session_id", "payment_id", "contract_id", "proposal_id", "offering_id",
                       "coach_id", "user_id", "action", "email_id", "dispute_id", "token"})


def ids_for(url) -> dict[str, dict[str, object]]:
    """For each role, a value for every argument a route can take, from the data set.

    The student and the coach are the busy pair, so they see their own objects: their next
    scheduled session, its payment, their latest contract. The admin gets the same ones,
    except a payment under dispute (what an admin opens a payment for).
    """
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            def one(sql: str, **params):
                return connection.scalar(text(sql), params)

            student = one("SELECT id FROM users WHERE email = :e", e=dataset.ACCOUNTS["student"])
            coach = one("SELECT id FROM users WHERE email = :e", e=dataset.ACCOUNTS["coach"])
            admin = one("SELECT id FROM users WHERE email = :e", e=dataset.ACCOUNTS["admin"])
            pair = "student_id = :s AND coach_id = :c"
            session = one(f"SELECT id FROM sessions WHERE {pair} AND status = 'scheduled' "
                          "ORDER BY starts_at LIMIT 1", s=student, c=coach)
            contract = one(f"SELECT id FROM contracts WHERE {pair} AND status = 'active' "
                           "ORDER BY id DESC LIMIT 1", s=student, c=coach)
            common = {
                "session_id": session, "payment_id": session, "contract_id": contract,
                "proposal_id": one("SELECT proposal_id FROM contracts WHERE id = :i",
                                   i=contract),
                "offering_id": one("SELECT min(id) FROM offerings WHERE coach_id = :c",
                                   c=coach),
                "coach_id": coach, "user_id": student, "action": "deactivate",
                "email_id": one("SELECT max(id) FROM outbox_emails WHERE recipient_id = :s",
                                s=student),
            }
            tokens = dict(connection.execute(text(
                "SELECT id, calendar_token FROM users WHERE id IN (:s, :c, :a)"),
                {"s": student, "c": coach, "a": admin}).all())
            disputed = one("SELECT max(payment_id) FROM disputes WHERE status = 'open'")
            common["dispute_id"] = one(
                "SELECT id FROM disputes WHERE payment_id = :p AND status = 'open'", p=disputed)
    finally:
        engine.dispose()
    ids = {"student": {**common, "token": tokens[student]},
           "coach": {**common, "token": tokens[coach]},
           "admin": {**common, "token": tokens[admin], "payment_id": disputed}}
    assert all(set(values) == ARGUMENTS for values in ids.values()), "update ARGUMENTS"
    return ids


def page_rules() -> list[tuple[str, str, list[str]]]:
    """(rule, endpoint, arguments) of every GET route, as the app's url_map has them."""
    from skileez import create_app

    app = create_app(support.app_config("sqlite://"))
    rules = []
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and rule.endpoint not in NOT_PAGES:
            rules.append((rule.rule, rule.endpoint, sorted(rule.arguments)))
    return sorted(rules)


def build_url(app_rule: str, values: dict[str, object]) -> str:
    """The rule with its ``<converter:name>`` parts filled in from ``values``."""
    def fill(match: re.Match) -> str:
        name = match.group(1).split(":")[-1]
        if name not in values:
            raise KeyError(f"the pages bench has no value for <{name}> in {app_rule}; "
                           "add one to ids_for()")
        return str(values[name])

    return re.sub(r"<([^>]+)>", fill, app_rule)


def first_link(body: str, url: str) -> str | None:
    """The first ``href`` in ``body`` to ``url`` with a query string, as a browser reads it."""
    match = re.search(rf'href="({re.escape(url)}\?[^"]+)"', body)
    return html.unescape(match.group(1)) if match else None


def discover(base: str, clients: dict, ids: dict) -> tuple[list[Page], list[str]]:
    """The pages each role opens (answers 200), and their fragments; plus what was left
    out and why.

    A route that answers 400 without a query string (the booking confirmation wants the
    chosen start) is opened the way a person reaches it: by the first link to it on the
    pages already found.
    """
    pages, left_out, wanting_query = [], [], []
    bodies: dict[str, list[tuple[str, str]]] = {role: [] for role in ROLES}

    def add(page: Page, full) -> None:
        bodies[page.role].append((page.rule, full.text))
        partial = clients[page.role].get(base + page.url, headers=HTMX, timeout=60,
                                         allow_redirects=False)
        is_html = full.headers.get("Content-Type", "").startswith("text/html")
        if is_html and "<html" not in full.text and partial.status_code == 200:
            # Only ever a fragment (the bell, the live status): asked for as htmx asks.
            page.fragment = True
            pages.append(page)
            return
        pages.append(page)
        if partial.status_code == 200 and "<html" in full.text \
                and "<html" not in partial.text:
            pages.append(Page(page.rule, page.role, page.url, fragment=True,
                              linked_from=page.linked_from))

    for rule, _endpoint, _arguments in page_rules():
        for role in ROLES:
            url = build_url(rule, ids[role])
            full = clients[role].get(base + url, timeout=60, allow_redirects=False)
            if full.status_code == 200:
                add(Page(rule, role, url), full)
            elif full.status_code == 400:
                wanting_query.append((rule, role, url))
            else:
                left_out.append(f"{rule} ({role}: {full.status_code})")
    for rule, role, url in wanting_query:
        source, link = next(((source, link) for source, body in bodies[role]
                             if (link := first_link(body, url))), (None, None))
        full = link and clients[role].get(base + link, timeout=60, allow_redirects=False)
        if full is not None and full.status_code == 200:
            add(Page(rule, role, link, linked_from=source), full)
        else:
            left_out.append(f"{rule} ({role}: 400, and no page links to it)")
    return pages, left_out


def relocate(base: str, clients: dict, pages: list[Page], ids: dict) -> None:
    """Point pages found on one data set at the same objects of another."""
    for page in pages:
        page.url = build_url(page.rule, ids[page.role])
        if page.linked_from:
            source = clients[page.role].get(
                base + build_url(page.linked_from, ids[page.role]), timeout=120)
            page.url = first_link(source.text, page.url) or page.url


def measure(base: str, clients: dict, page: Page, size: str) -> None:
    http = clients[page.role]
    headers = HTMX if page.fragment else {}

    def get():
        response = http.get(base + page.url, headers=headers, timeout=120,
                            allow_redirects=False)
        if response.status_code != 200:
            raise RuntimeError(f"{page.url} ({page.role}, {size}) answered "
                               f"{response.status_code}")
        return int(response.headers["X-Bench-Statements"])

    began = time.perf_counter()
    counts = [get()]  # warm-up: templates compiled, caches and connections made
    samples: list[float] = []
    while len(samples) < SAMPLES and (len(samples) < MIN_SAMPLES or
                                      time.perf_counter() - began < SECONDS_PER_PAGE):
        started = time.perf_counter()
        counts.append(get())
        samples.append(time.perf_counter() - started)
    page.statements[size] = max(counts)
    page.median_ms[size] = support.median_ms(samples)
    page.worst_ms[size] = max(samples) * 1e3


def shape(statement: str) -> str:
    """A statement on one line with its column list folded, so the clauses show."""
    return re.sub(r"^SELECT (DISTINCT )?.*? FROM ", r"SELECT \1… FROM ",
                  " ".join(statement.split()))


def seq_scans(base: str, clients: dict, pages: list[Page]) -> dict[str, dict]:
    """{statement: {"tables": {...}, "pages": {...}}} for each SELECT whose plan reads a
    table of more than BIG_TABLE rows by sequential scan."""
    found: dict[str, dict] = {}
    for page in pages:
        headers = {**(HTMX if page.fragment else {}), "X-Bench-Explain": "1"}
        answer = clients[page.role].get(base + page.url, headers=headers, timeout=120,
                                        allow_redirects=False)
        for item in answer.json():
            big = {f"{scan['table']} ({scan['rows']:,} rows)" for scan in item["seq_scans"]
                   if scan["rows"] > BIG_TABLE}
            if big:
                entry = found.setdefault(shape(item["statement"]),
                                         {"tables": set(), "pages": set()})
                entry["tables"] |= big
                entry["pages"].add(f"{page.name} ({page.role})")
    return found


def run_size(size: str, url, pages: list[Page] | None) -> tuple[list[Page], list[str]]:
    with support.gunicorn(url, workers=1, environment={"BENCH_STATEMENTS": "1"}) as base:
        clients = {role: support.signed_in(base, dataset.ACCOUNTS[role]) for role in ROLES}
        left_out: list[str] = []
        if pages is None:
            pages, left_out = discover(base, clients, ids_for(url))
        else:  # the same pages, with this data set's ids
            relocate(base, clients, pages, ids_for(url))
        for page in pages:
            measure(base, clients, page, size)
        if size == "large":
            scans = seq_scans(base, clients, pages)
            print(f"   sequential scans of tables over {BIG_TABLE:,} rows, large set "
                  f"({len(scans)} statements):")
            for statement, entry in sorted(scans.items(),
                                           key=lambda item: sorted(item[1]["pages"])):
                print(f"   - {', '.join(sorted(entry['tables']))} in "
                      f"{', '.join(sorted(entry['pages']))}:")
                print(f"       {statement[:600]}")
    return pages, left_out


def main() -> None:
    urls = {size: dataset.ensure(size) for size in ("small", "large")}
    pages, left_out = run_size("small", urls["small"], None)
    run_size("large", urls["large"], pages)

    print(f"   {len(pages)} pages and fragments (every GET route each role opens; "
          f"not opened: {len(left_out)})")
    width = max(len(p.name) for p in pages)
    print(f"   {'page':<{width}}  {'role':<7}  {'SQL small→large':>15}  "
          f"{'median ms small→large':>21}  {'worst ms large':>14}")
    over = []
    for page in sorted(pages, key=lambda p: (p.rule, p.fragment, p.role)):
        small, large = page.statements["small"], page.statements["large"]
        marks = []
        if max(small, large) > MAX_STATEMENTS:
            marks.append(f">{MAX_STATEMENTS} SQL")
        if page.median_ms["large"] > MAX_MEDIAN_MS:
            marks.append(f">{MAX_MEDIAN_MS} ms")
        if large > small:
            marks.append("grows")
        if large > MAX_STATEMENTS or page.median_ms["large"] > MAX_MEDIAN_MS:
            over.append(page)
        print(f"   {page.name:<{width}}  {page.role:<7}  {small:>6} → {large:<6}  "
              f"{page.median_ms['small']:>9.0f} → {page.median_ms['large']:<9.0f}  "
              f"{page.worst_ms['large']:>14.0f}  {' '.join(marks)}")
    # 403 and 404 only say the route is another role's; anything else is worth reading.
    unexpected = [line for line in left_out if not re.search(r": 40[34]\)$", line)]
    print(f"   not opened: {len(left_out) - len(unexpected)} routes of another role "
          f"(403/404){'; ' if unexpected else ''}{'; '.join(unexpected)}")
    slowest = max(pages, key=lambda p: p.median_ms["large"])
    total = statistics.fsum(p.median_ms["large"] for p in pages)
    print(f"   {len(over)} of {len(pages)} over budget on large; medians add up to "
          f"{total:.0f} ms")
    support.record("pages over budget", str(len(over)))
    support.record("slowest page", f"{slowest.name} ({slowest.role}) "
                                   f"{slowest.median_ms['large']:.0f} ms")


if __name__ == "__main__":
    main()
