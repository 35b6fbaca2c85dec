"""Summarise the last `mutmut run`: a table per mutated module and a last JSON line (`make mutation`).

killed_pct = killed / (killed + survived), where survived counts mutants no test noticed, including those no
selected test reaches ("no tests"). Timeouts are shown apart and left out of the ratio: on a shared 2-core box
a slow run is not evidence either way. Mutants listed in tests/mutation/MUTANTS.md as equivalent (every backticked
mutant name in it) count as survived in killed_pct, and are left out of `killed_pct_without_equivalent`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
STATUS = {"killed": "killed", "survived": "survived", "no tests": "survived", "timeout": "timeout",
          "suspicious": "timeout", "segfault": "killed", "not checked": "not checked", "skipped": "skipped"}


def results() -> list[tuple[str, str]]:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            rows.append((name, status))
    return rows


def equivalent() -> set[str]:
    path = ROOT / "tests" / "mutation" / "MUTANTS.md"
    if not path.exists():
        return set()
    return set(re.findall(r"`([^`\s]+__mutmut_\d+)`", path.read_text()))


def main() -> int:
    rows = results()
    listed = equivalent()
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in rows:
        module = re.split(r"\.x[_ǁ]", name, maxsplit=1)[0]
        kind = STATUS.get(status, status)
        if kind == "survived" and name in listed:
            kind = "equivalent"
        by_module[module][kind] += 1
        by_module[module]["no tests"] += status == "no tests"
    table = Table(title="mutation testing (mutmut)")
    columns = ("killed", "survived", "no tests", "equivalent", "timeout", "not checked")
    for column in ("module", *columns, "killed %"):
        table.add_column(column, justify="left" if column == "module" else "right")
    total: Counter[str] = Counter()
    for module in sorted(by_module):
        c = by_module[module]
        total.update(c)
        checked = c["killed"] + c["survived"] + c["equivalent"]
        table.add_row(module, *(str(c[k]) for k in columns), f"{100 * c['killed'] / checked:.1f}" if checked else "-")
    Console(width=140).print(table)
    survived = total["survived"] + total["equivalent"]
    checked = total["killed"] + survived
    print(json.dumps({
        "killed": total["killed"], "survived": survived, "equivalent": total["equivalent"],
        "no_tests": total["no tests"], "timeout": total["timeout"], "not_checked": total["not checked"],
        "killed_pct": round(100 * total["killed"] / checked, 1) if checked else None,
        "killed_pct_without_equivalent": round(100 * total["killed"] / (checked - total["equivalent"]), 1)
        if checked - total["equivalent"] else None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
