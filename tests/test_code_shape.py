"""The shape every request has, kept true by reading the code.

A view or an operation that commits by hand, or a second way of asking "is this
htmx?", would pass every behaviour test on the day it was written; these catch it
the day it is written, with the place to go instead in the message.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "skileez"

# Where a transaction may end, and why (each place says so in its own docstring).
TRANSACTION_BOUNDARIES = {
    "core/unit_of_work.py": "the unit of work itself: commit on success, roll back on error",
    "core/web.py": "the 500 handler rolls back whatever the failed request left",
    "payments/attempts.py": "a call to Stripe sits between two commits: nothing is locked "
                            "while Stripe answers, and its answer is stored before we act",
}


def python_files():
    return sorted(path for path in PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_only_the_unit_of_work_and_named_boundaries_end_a_transaction():
    pattern = re.compile(r"db\.session\.(commit|rollback)\(")
    offenders = [f"{relative(path)}:{number}"
                 for path in python_files() if relative(path) not in TRANSACTION_BOUNDARIES
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == [], (
        "Use core.unit_of_work.submit() in views and transaction() in jobs; a new "
        f"boundary belongs in TRANSACTION_BOUNDARIES with its reason: {offenders}")


def test_htmx_is_recognised_in_one_place():
    offenders = [f"{relative(path)}:{number}"
                 for path in python_files() if relative(path) != "core/http.py"
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if 'headers.get("HX-Request")' in line or "headers['HX-Request']" in line
                 or 'headers["HX-Request"]' in line]
    assert offenders == [], f"Ask skileez.core.http.is_htmx(): {offenders}"


def test_views_leave_rule_errors_to_the_unit_of_work():
    """A view that catches DomainError itself is the old try/commit/except shape back."""
    offenders = [f"{relative(path)}:{number}"
                 for path in python_files() if path.name == "routes.py"
                 or path.parent.name == "admin"
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"except (DomainError|Conflict)\b", line)]
    assert offenders == [], f"Let submit() answer DomainError/Conflict: {offenders}"


def test_no_local_environment_is_committed():
    """A symlinked .venv slipped into a commit once: checking it out replaced the
    real virtualenv with a link to itself. Nothing machine-local belongs in git."""
    import shutil
    import subprocess

    root = PACKAGE.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        return
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    local = [path for path in tracked
             if path.split("/", 1)[0] in {".venv", "instance", "test-artifacts", "build"}]
    assert local == [], f"machine-local files are tracked: {local}"
