"""Names are mirrored verbatim: dots, spaces, UTF-8, 255-byte names."""

from __future__ import annotations

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
    """A name that is not UTF-8 is mirrored byte for byte and printed back verbatim by verify."""
    name = b"raw-\xff\xfe.bin"
    os.mkdir(os.path.join(os.fsencode(mirror.cgroup_root), name))
    mirror.cli("run", "--once", check=True)
    assert name in os.listdir(os.fsencode(os.path.join(mirror.bpffs, "cgroup")))
    assert os.path.exists(os.path.join(os.fsencode(mirror.bpffs), b"cgroup", name, b"hist_oncpu"))
    os.unlink(os.path.join(os.fsencode(mirror.bpffs), b"cgroup", name, b"hist_oncpu"))
    res = subprocess.run([sys.executable, "-m", "bpffs_sync", "verify", *mirror.args()], capture_output=True,
                         env={**os.environ, **mirror.env}, check=False)
    assert res.returncode == 1, res.stderr
    assert b"missing        " + name + b"/hist_oncpu" in res.stdout
    doc = json.loads(mirror.cli("verify", "--json").stdout)
    assert os.fsencode(doc["drift"]["missing"][0]["path"]) == name + b"/hist_oncpu"


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
