"""The outbox: write ahead, send, mark sent."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class Outbox:
    """An append-only JSON-lines file of acks and reports, each written before it is sent.

    A line is `{"seq": n, "kind": "ack" | "report", ...}`; a `{"sent": n}` line marks n delivered. After a
    crash or an outage, everything past the last delivered mark is sent again, in order; the SQL
    functions are idempotent, so a resend cannot double a row.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: deque[dict[str, Any]] = deque()
        self._seq = 0
        if path.exists():
            sent: set[int] = set()
            entries = []
            lines = path.read_text().splitlines()
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    if number == len(lines):  # a crash mid-write: that record was never sent, nothing is lost
                        logger.warning(f"outbox {path}: skipped a torn last line (a crash while writing it)")
                        continue
                    raise ValueError(f"outbox {path}, line {number}: not JSON; move the file aside to start "
                                     "(its undelivered events would then be lost)") from None
                if "sent" in record:
                    sent.add(record["sent"])
                else:
                    entries.append(record)
                    self._seq = max(self._seq, record["seq"])
            self._pending.extend(e for e in entries if e["seq"] not in sent)
            self._compact()  # also ends a torn line, so the next append starts on a line of its own

    def append(self, kind: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            record = {"seq": self._seq, "kind": kind, **payload}
            self._write(record)
            self._pending.append(record)

    def peek(self) -> dict[str, Any] | None:
        with self._lock:
            return self._pending[0] if self._pending else None

    def mark_sent(self, seq: int) -> None:
        with self._lock:
            if self._pending and self._pending[0]["seq"] == seq:
                self._pending.popleft()
            if self._pending:
                self._write({"sent": seq})
            else:
                self._compact()  # all delivered: the file need not grow forever

    def _compact(self) -> None:
        """Rewrite the file with only the undelivered records (atomically: a crash leaves the old or the new)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as f:
            for record in self._pending:
                f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

