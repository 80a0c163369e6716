"""Names are mirrored verbatim: dots, spaces, UTF-8, 255-byte names."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from helpers import Mirror, wait_for

NAMES = {
    "dots": "system.slice",
    "service": "foo.service",
    "leading_dot": ".hidden",
    "space": "with space",
    "utf8": "jöbs-日本",
    "max_ascii": "x" * 255,
    "max_utf8": "é" * 127 + "x",  # 255 bytes
}


@pytest.mark.parametrize("name", NAMES.values(), ids=list(NAMES))
def test_odd_name_is_mirrored(mirror: Mirror, name: str) -> None:
    """The cgroup appears under its own name, its file serves it, and verify agrees."""
    assert len(os.fsencode(name)) <= 255
    mirror.start()
    os.makedirs(os.path.join(mirror.cgroup_root, name, "child.scope"))
    rel = f"{name}/child.scope"
    wait_for(lambda: os.path.exists(mirror.stat_path(rel)), 10, f"{name!r} mirrored")
    assert name in os.listdir(os.path.join(mirror.bpffs, "cgroup"))
    with open(mirror.stat_path(rel), encoding="utf-8") as f:
        first = f.readline()
    assert first == f"cgroup_id: {os.stat(mirror.cg(rel)).st_ino}\n"
    assert mirror.in_sync()
    # Mirror directories keep their mode: the dot trick restores the parent's.
    assert os.stat(os.path.join(mirror.bpffs, "cgroup", name)).st_mode & 0o777 == 0o755


def test_undecodable_name(mirror: Mirror) -> None:
    """A name that is not UTF-8 is mirrored byte for byte; verify shows it escaped (\\xNN) as text,
    and as JSON gives valid UTF-8: the escaped text in `path`, the exact bytes in `path_b64`."""
    name = b"raw-\xff\xfe.bin"
    os.mkdir(os.path.join(os.fsencode(mirror.cgroup_root), name))
    mirror.cli("run", "--once", check=True)
    assert name in os.listdir(os.fsencode(os.path.join(mirror.bpffs, "cgroup")))
    assert os.path.exists(os.path.join(os.fsencode(mirror.bpffs), b"cgroup", name, b"hist_oncpu"))
    os.unlink(os.path.join(os.fsencode(mirror.bpffs), b"cgroup", name, b"hist_oncpu"))
    res = _verify_bytes(mirror)
    assert res.returncode == 1, res.stderr
    assert b"missing        raw-\\xff\\xfe.bin/hist_oncpu" in res.stdout, res.stdout
    res = _verify_bytes(mirror, "--json")
    doc = json.loads(res.stdout.decode("utf-8"))  # strict UTF-8: no lone surrogate ("\\udcff") in it
    assert b"\\udc" not in res.stdout, res.stdout
    item = doc["drift"]["missing"][0]
    assert base64.b64decode(item["path_b64"]) == name + b"/hist_oncpu"
    assert item["path"] == "raw-\\xff\\xfe.bin/hist_oncpu"


def _verify_bytes(mirror: Mirror, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bpffs_sync", "verify", *mirror.args(), *args],
                          capture_output=True, env={**os.environ, **mirror.env}, check=False)


def test_control_characters_are_escaped_in_text(mirror: Mirror) -> None:
    """A cgroup named with an escape sequence or a tab is mirrored verbatim; verify's text shows
    it escaped and never writes the control bytes; --json keeps the exact name."""
    names = ["evil-\x1b[2J\x1b[H\x07", "tab\there", "c1-\x9b31m"]  # cgroupfs refuses a newline
    for name in names:
        os.mkdir(mirror.cg(name))
    mirror.cli("run", "--once", check=True)
    for name in names:
        assert os.path.exists(mirror.stat_path(name))
        os.unlink(mirror.stat_path(name))
    res = _verify_bytes(mirror)
    assert res.returncode == 1, res.stderr
    for control in (b"\x1b", b"\x07", b"\xc2\x9b"):
        assert control not in res.stdout, res.stdout
    lines = res.stdout.decode("utf-8").splitlines()
    for shown in ("evil-\\x1b[2J\\x1b[H\\x07", "tab\\x09here", "c1-\\u009b31m"):
        assert any(line.startswith(f"missing        {shown}/hist_oncpu (cgroup ") for line in lines), lines
    doc = json.loads(_verify_bytes(mirror, "--json").stdout.decode("utf-8"))
    assert sorted(d["path"] for d in doc["drift"]["missing"]) == sorted(f"{n}/hist_oncpu" for n in names)


def test_dotted_entries_survive_drop_caches(mirror: Mirror) -> None:
    """bpffs dentries are persistent: dotted entries stay reachable after drop_caches."""
    os.makedirs(mirror.cg("a.slice/b.service"))
    mirror.cli("run", "--once", check=True)
    with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as f:
        f.write("2")
    with open(mirror.stat_path("a.slice/b.service"), encoding="utf-8") as f:
        assert f.read().startswith("cgroup_id: ")
    assert mirror.in_sync()


def test_dotted_rmdir(mirror: Mirror) -> None:
    """Removing a dotted cgroup removes its dotted mirror directory."""
    mirror.start()
    os.makedirs(mirror.cg("x.slice/y.scope"))
    wait_for(lambda: os.path.exists(mirror.stat_path("x.slice/y.scope")), 10, "mirrored")
    os.rmdir(mirror.cg("x.slice/y.scope"))
    os.rmdir(mirror.cg("x.slice"))
    wait_for(lambda: "x.slice" not in os.listdir(os.path.join(mirror.bpffs, "cgroup")), 10, "removed")
    assert mirror.in_sync()
