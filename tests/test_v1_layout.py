"""The v1 layout for hierarchies we mount ourselves: co-mounted controllers, named hierarchies,
controller symlinks; hierarchies mounted and unmounted while the daemon runs; bad --v1 input."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
from helpers import Mirror, assert_one_line_error, cli, wait_for
from v1_scratch import mounted_v1_hierarchy

from v1_controllers.discovery import PROC_CGROUPS, parse_proc_cgroups


def free_controllers() -> set[str]:
    """Controllers on no v1 hierarchy and not enabled below the v2 root: mountable on v1 here."""
    with open(PROC_CGROUPS, encoding="ascii") as f:
        free = {name for name, hid, on in parse_proc_cgroups(f.read()) if hid == 0 and on}
    try:
        with open("/sys/fs/cgroup/unified/cgroup.subtree_control", encoding="ascii") as f:
            free -= set(f.read().split())
    except OSError:
        pass
    return free


def need_free(*names: str) -> None:
    missing = set(names) - free_controllers()
    if missing:
        pytest.skip(f"controllers {sorted(missing)} are not free to mount on v1 here")


@pytest.fixture
def comounted(kernel: None) -> Iterator[str]:
    need_free("net_cls", "net_prio")
    with mounted_v1_hierarchy("net_cls,net_prio") as path:
        yield path


@pytest.fixture
def named(kernel: None) -> Iterator[tuple[str, str]]:
    name = f"bpffs-test-{uuid.uuid4().hex[:8]}"
    with mounted_v1_hierarchy(f"none,name={name}") as path:
        yield f"name={name}", path


def v1_dir(mirror: Mirror, *parts: str) -> str:
    return os.path.join(mirror.bpffs, "cgroup-v1", *parts)


def test_comounted_hierarchy_layout_and_symlinks(mirror: Mirror, comounted: str) -> None:
    """net_cls,net_prio is one tree named like /proc/<pid>/cgroup; each controller's symlink resolves to it."""
    os.makedirs(os.path.join(comounted, "app.slice/web"))
    mirror.cli("run", "--once", "--v1", "net_cls", check=True)
    tree = v1_dir(mirror, "net_cls,net_prio")
    assert os.path.isdir(os.path.join(tree, "app.slice/web"))
    for ctrl in ("net_cls", "net_prio"):
        link = v1_dir(mirror, ctrl)
        assert os.readlink(link) == "net_cls,net_prio"
        assert os.path.realpath(link) == os.path.realpath(tree)
        assert os.listdir(os.path.join(link, "app.slice")) == ["web"]
    for selector in ("net_cls", "net_prio", "net_cls,net_prio", comounted):
        res = mirror.cli("verify", "--v1", selector)
        assert res.returncode == 0, (selector, res.stdout, res.stderr)
    os.unlink(v1_dir(mirror, "net_prio"))
    doc = json.loads(mirror.cli("verify", "--v1", "net_prio", "--json").stdout)
    assert doc["in_sync"] is False
    assert doc["top_drift"] == {"missing": [{"path": "net_prio", "kind": "symlink", "target": "net_cls,net_prio"}]}


def test_named_hierarchy_layout(mirror: Mirror, named: tuple[str, str]) -> None:
    """A name-only hierarchy is mirrored at cgroup-v1/name=<name>, with no controller symlink."""
    name, path = named
    os.makedirs(os.path.join(path, "a/b.scope"))
    mirror.cli("run", "--once", "--v1", name, check=True)
    assert os.path.isdir(v1_dir(mirror, name, "a/b.scope"))
    assert sorted(os.listdir(v1_dir(mirror))) == [name]
    assert mirror.cli("verify", "--v1", name).returncode == 0


def test_named_comount_with_free_controller(mirror: Mirror) -> None:
    """perf_event,name=<n>: the hierarchy's name carries both; perf_event -> it."""
    need_free("perf_event")
    name = f"bpffs-test-{uuid.uuid4().hex[:8]}"
    with mounted_v1_hierarchy(f"perf_event,name={name}") as path:
        os.mkdir(os.path.join(path, "x"))
        mirror.cli("run", "--once", "--v1", "perf_event", check=True)
        hierarchy = f"perf_event,name={name}"
        assert os.readlink(v1_dir(mirror, "perf_event")) == hierarchy
        assert os.path.isdir(v1_dir(mirror, "perf_event", "x"))
        assert mirror.cli("verify", "--v1", f"name={name}").returncode == 0
        mirror.cli("clean", check=True)
    assert not os.path.exists(v1_dir(mirror))


def test_hierarchy_mounted_and_unmounted_while_running(mirror: Mirror) -> None:
    """A selected hierarchy that appears later is picked up; unmounted, its tree is dropped."""
    name = f"name=bpffs-test-{uuid.uuid4().hex[:8]}"
    mirror.start("--v1", name)
    assert not os.path.exists(v1_dir(mirror, name))
    with mounted_v1_hierarchy(f"none,{name}") as path:
        os.makedirs(os.path.join(path, "late/child"))
        wait_for(lambda: os.path.isdir(v1_dir(mirror, name, "late/child")), 10, "new hierarchy mirrored")
        assert mirror.cli("verify", "--v1", name).returncode == 0
    wait_for(lambda: not os.path.exists(v1_dir(mirror, name)), 10, "tree dropped after umount")
    assert "tree_dropped" in mirror.log()


def test_unknown_controller_is_one_line_error(mirror: Mirror) -> None:
    """--v1 with a controller nobody knows: exit 2, one line naming it."""
    assert_one_line_error(mirror.cli("verify", "--v1", "nosuch"), "nosuch", "unknown controller")
    assert_one_line_error(mirror.cli("run", "--once", "--v1", "memory,nosuch"), "nosuch")


def test_known_but_unmounted_is_one_line_error(mirror: Mirror) -> None:
    """verify --v1 of a hierarchy that is not mounted, or of a directory that is not a v1 cgroup."""
    assert_one_line_error(mirror.cli("verify", "--v1", "name=bpffs-nowhere"), "name=bpffs-nowhere", "not mounted")
    assert_one_line_error(cli("verify", "--bpffs", mirror.bpffs, "--v1", "/tmp"), "/tmp", "not a cgroup v1 directory")
