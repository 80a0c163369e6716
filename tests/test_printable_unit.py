"""Names are data (printable.py): text escapes, JSON stays valid UTF-8 and lossless. No root needed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from bpffs_sync.printable import escape, escape_lines, json_safe

RAW = os.fsdecode(b"raw-\xff\x85")  # two bytes that are not UTF-8, as surrogate escapes


@pytest.mark.parametrize(("name", "shown"), [
    ("jobs", "jobs"),
    ("jöbs-日本 x", "jöbs-日本 x"),  # printable non-ASCII and spaces stay
    ("\x1b[2J", "\\x1b[2J"),  # ESC: the terminal must not obey it
    ("a\nb\tc\x00", "a\\x0ab\\x09c\\x00"),  # C0: one line per name
    ("del\x7f", "del\\x7f"),
    ("c1\x85\x9b", "c1\\u0085\\u009b"),  # C1 code points (valid UTF-8): \\u, never \\x
    (RAW, "raw-\\xff\\x85"),  # raw bytes: \\x
    ("back\\slash", "back\\\\slash"),  # the escape character itself
    ("rtl\u202eexe", "rtl\\u202eexe"),  # a bidi override is not printable either
])
def test_escape(name: str, shown: str) -> None:
    """Each non-printable character and the backslash is escaped; everything else is kept."""
    assert escape(name) == shown
    assert escape(name).isprintable()


def test_escape_is_unambiguous() -> None:
    """A C1 character, the raw byte of the same value and the text of its escape all differ."""
    shown = {escape("\x85"), escape(os.fsdecode(b"\x85")), escape("\\x85")}
    assert len(shown) == 3


def test_escape_lines_keeps_line_breaks() -> None:
    assert escape_lines("a\x1b\nb") == "a\\x1b\nb"


def test_json_safe_is_valid_utf8_and_lossless() -> None:
    """Valid UTF-8 strings are unchanged; a non-UTF-8 one is escaped text plus <key>_b64."""
    doc: dict[str, Any] = {"in_sync": False, "drift": {"missing": [{"path": f"{RAW}/hist_oncpu", "kind": "file"}]},
           "tree": "cgroup", "ok": "jöbs\x1b", "problems": [RAW]}
    out = json_safe(doc)
    text = json.dumps(out, ensure_ascii=False)
    text.encode("utf-8")  # strict: no lone surrogate left
    item = out["drift"]["missing"][0]
    assert item["path"] == "raw-\\xff\\x85/hist_oncpu"
    assert base64.b64decode(item["path_b64"]) == b"raw-\xff\x85/hist_oncpu"
    assert out["ok"] == "jöbs\x1b" and "ok_b64" not in out  # JSON escapes control characters itself
    assert out["problems"] == ["raw-\\xff\\x85"]
    assert doc["drift"]["missing"][0]["path"] == f"{RAW}/hist_oncpu"  # the input is not modified


def test_third_party_logging_is_json() -> None:
    """A library's stdlib logging line is one JSON object in --log-format json (not plain text)."""
    code = ("import logging; from bpffs_sync import log; log.setup('json');"
            "logging.getLogger('watchdog.observers.inotify_buffer').warning('Inotify queue overflowed')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    doc = json.loads(lines[0])
    assert doc["event"] == "Inotify queue overflowed" and doc["level"] == "warning"
    assert doc["logger"] == "watchdog.observers.inotify_buffer" and "timestamp" in doc


def test_log_lines_carry_names_as_data() -> None:
    """JSON log lines are valid UTF-8 with <key>_b64 for raw bytes; console lines escape controls."""
    code = ("import os; from bpffs_sync import log; log.setup({fmt!r});"
            "log.get('t').warning('op_failed', path=os.fsdecode(b'raw-\\xff\\x1b[2J'))")
    res = subprocess.run([sys.executable, "-c", code.format(fmt="json")], capture_output=True, check=True)
    doc = json.loads(res.stderr.decode("utf-8"))  # strict
    assert base64.b64decode(doc["path_b64"]) == b"raw-\xff\x1b[2J" and doc["path"] == "raw-\\xff\\x1b[2J"
    res = subprocess.run([sys.executable, "-c", code.format(fmt="console")], capture_output=True, check=True)
    assert b"\x1b" not in res.stderr and b"raw-\\xff\\x1b[2J" in res.stderr, res.stderr
