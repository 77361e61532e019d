"""The documents in the repository say what the code does, and stand on their own."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from skileez.policy import Policy
from skileez.policy_table import describe_default, environment_name, with_table

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "docs" / "rules.md"


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Policy)])
def test_every_policy_setting_is_in_the_rules_with_its_default_and_variable(name):
    row = next((line for line in RULES.read_text(encoding="utf-8").splitlines()
                if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"{name} is missing from docs/rules.md"
    assert f"`{environment_name(name)}=" in row
    assert f"| {describe_default(getattr(Policy(), name))} |" in row


def test_the_policy_table_is_the_one_the_code_writes():
    document = RULES.read_text(encoding="utf-8")
    assert with_table(document) == document, "run `python -m skileez.policy_table`"


def test_the_readme_sends_nobody_outside_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../" not in readme
    assert not re.search(r"\b(SPEC|GUIDE)\.md\b", readme)
    for link in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert (ROOT / link).exists(), f"README links to {link}, which is not in the repository"
