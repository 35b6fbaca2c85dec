"""`python -m controller status`: the health table from the database's heartbeats and flags.

Exit code 0 when every component that is not disabled is healthy, 1 when one is degraded or down
(the database itself unreachable counts as the store being down).
"""

from __future__ import annotations

import json

from controller.ops.health import HealthReport


def report_json(report: HealthReport) -> str:
    return json.dumps({
        "at": report.at.isoformat(), "state": report.state.value,
        "components": [{"name": c.name, "kind": c.kind.value, "state": c.state.value, "reasons": list(c.reasons),
                        "notes": list(c.notes),
                        "last_seen": c.last_seen.isoformat() if c.last_seen else None,
                        "last_progress_at": c.last_progress_at.isoformat() if c.last_progress_at else None}
                       for c in report.components],
    }, indent=2)


