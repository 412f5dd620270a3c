"""Every SQL statement the controller runs is a named query function of ``mdm.controller.store``."""

from __future__ import annotations

import re
from pathlib import Path

import mdm.controller

SQL = re.compile(r"\.execute(many)?\(|\b(SELECT|INSERT|UPDATE|DELETE)\b[^\n]*\b(FROM|INTO|SET)\b")


def test_no_sql_outside_the_store() -> None:
    package = Path(mdm.controller.__file__).parent
    offenders = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SQL.search(line)
    ]
    assert offenders == []
    assert any(SQL.search(p.read_text()) for p in (package / "store").glob("*.py"))  # the pattern does match SQL
