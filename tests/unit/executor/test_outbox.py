"""The outbox file: every record written before it is sent, delivery marked in order, and a reopened file holds
only what was not sent (a torn last line skipped, damage inside refused)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from executor.outbox import Outbox

D = Decimal




def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_outbox_writes_each_record_before_it_is_sent_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "bot" / "data" / "outbox.jsonl"  # its folder does not exist yet
    outbox = Outbox(path)
    assert outbox.peek() is None and len(outbox) == 0 and path.parent.is_dir()
    signal_id = UUID(int=7)
    outbox.append("ack", {"signal_id": signal_id, "amount": D("1.5")})
    outbox.append("report", {"type": "order_created"})
    # written first (values that JSON has no type for are written as text)
    assert lines(path) == [{"seq": 1, "kind": "ack", "signal_id": str(signal_id), "amount": "1.5"},
                           {"seq": 2, "kind": "report", "type": "order_created"}]
    assert len(outbox) == 2
    assert outbox.peek() == {"seq": 1, "kind": "ack", "signal_id": signal_id, "amount": D("1.5")}


def test_outbox_marks_delivery_in_order_and_reopens_with_only_what_was_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    outbox = Outbox(path)
    for n in range(3):
        outbox.append("ack", {"n": n})
    assert len(outbox) == 3 and outbox.peek()["seq"] == 1
    outbox.mark_sent(1)
    assert len(outbox) == 2 and outbox.peek()["seq"] == 2
    assert lines(path)[-1] == {"sent": 1}  # a mark line while records wait, not a rewrite

    reopened = Outbox(path)  # a restart
    assert len(reopened) == 2 and reopened.peek() == {"seq": 2, "kind": "ack", "n": 1}
    assert lines(path) == [{"seq": 2, "kind": "ack", "n": 1}, {"seq": 3, "kind": "ack", "n": 2}]  # compacted
    reopened.append("ack", {"n": 3})
    assert reopened.peek()["seq"] == 2 and lines(path)[-1]["seq"] == 4  # numbering goes on past the last record
    reopened.mark_sent(2)
    reopened.mark_sent(3)
    reopened.mark_sent(4)
    assert len(reopened) == 0 and reopened.peek() is None and path.read_text() == ""
    assert not path.with_name(path.name + ".tmp").exists()  # the rewrite replaced the file


def test_outbox_reopening_skips_blank_lines_and_a_torn_last_line_but_refuses_damage_inside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.jsonl"
    first = {"seq": 5, "kind": "ack", "n": 0}
    second = {"seq": 9, "kind": "report", "n": 1}
    path.write_text("\n" + json.dumps(first) + "\n   \n" + json.dumps(second) + "\n" + '{"seq": 10, "ki')
    outbox = Outbox(path)
    assert len(outbox) == 2 and outbox.peek() == first
    assert lines(path) == [first, second]  # the torn line is gone and the file ends with a newline
    assert f"outbox {path}: skipped a torn last line (a crash while writing it)" in caplog.text
    outbox.append("ack", {"n": 2})
    assert lines(path)[-1] == {"seq": 10, "kind": "ack", "n": 2}

    path.write_text(json.dumps(first) + "\n{oops\n" + json.dumps(second) + "\n")
    with pytest.raises(ValueError) as raised:
        Outbox(path)
    assert str(raised.value) == (f"outbox {path}, line 2: not JSON; move the file aside to start (its undelivered "
                                 "events would then be lost)")
    assert path.read_text().count("\n") == 3  # the damaged file is left as it was, for a person to look at


def test_a_mark_for_an_empty_outbox_changes_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.mark_sent(1)  # a mark repeated after a restart that found everything delivered
    assert len(outbox) == 0 and outbox.peek() is None and (tmp_path / "outbox.jsonl").read_text() == ""


def test_outbox_reopened_after_everything_was_sent_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    path.write_text(json.dumps({"seq": 1, "kind": "ack"}) + "\n" + json.dumps({"seq": 2, "kind": "ack"}) + "\n"
                    + json.dumps({"sent": 1}) + "\n" + json.dumps({"sent": 2}) + "\n")
    outbox = Outbox(path)
    assert len(outbox) == 0 and outbox.peek() is None and path.read_text() == ""
    outbox.append("ack", {})
    assert outbox.peek()["seq"] == 3  # numbers are not reused while the old marks may still be around
