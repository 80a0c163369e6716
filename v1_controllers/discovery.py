"""Which cgroup-v1 hierarchies are mounted, and what each is called.

Sources (all read by this process, so all in its mount and cgroup namespaces):
- /proc/self/mountinfo (parsed by the caller, bpffs_sync.mountinfo, and handed in: this package
  imports nothing of bpffs_sync): every `cgroup` (v1) mount, its superblock options (the controllers and
  `name=`) and its root within the hierarchy. A mount whose root is not "/" is a bind mount of a
  subdirectory and is not a hierarchy root; a hierarchy mounted twice shows twice.
- /proc/cgroups: controller -> hierarchy id, in subsystem-id order (the order names are printed in).
- /proc/self/cgroup: hierarchy id -> name field, the only source for a hierarchy without controllers.

A hierarchy is named exactly as /proc/<pid>/cgroup prints it (kernel/cgroup/cgroup.c:
proc_cgroup_show()): its controllers' legacy names in subsystem-id order, comma-separated, then
`name=<name>` for a named hierarchy: `memory`, `cpu,cpuacct`, `name=systemd`, `cpu,name=foo`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

PROC_CGROUPS = "/proc/cgroups"
SELF_CGROUP = "/proc/self/cgroup"


class Mount(Protocol):
    """What discovery reads of one /proc/self/mountinfo line (bpffs_sync.mountinfo.MountEntry has it)."""

    @property
    def dev(self) -> str: ...  # major:minor of the filesystem
    @property
    def root(self) -> str: ...  # the filesystem's directory this mount shows
    @property
    def mount_point(self) -> str: ...
    @property
    def fstype(self) -> str: ...
    @property
    def super_options(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Hierarchy:
    name: str  # as /proc/<pid>/cgroup prints it; the directory under <bpffs>/cgroup-v1/
    hierarchy_id: int  # cgroup_root->hierarchy_id: the first half of every stats-map key
    controllers: tuple[str, ...]  # in subsystem-id order; () for a hierarchy with only a name
    mount_points: tuple[str, ...]  # every mount of its root, in mountinfo order

    @property
    def mount_point(self) -> str:
        return self.mount_points[0]

    def answers(self, selector: str) -> bool:
        """Is this the hierarchy `selector` names: its full name, one of its controllers, or its
        `name=<name>` part (`name=foo` selects `cpu,name=foo` too)?"""
        if selector in (self.name, *self.controllers):
            return True
        return selector.startswith("name=") and self.name.endswith("," + selector)

    def symlinks(self) -> dict[str, str]:
        """<bpffs>/cgroup-v1/<controller> -> <hierarchy>, for each controller not named like it."""
        return {c: self.name for c in self.controllers if c != self.name}


def parse_proc_cgroups(text: str) -> list[tuple[str, int, bool]]:
    """(controller, hierarchy id, enabled) per line, in subsystem-id order."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#") or len(fields) < 4:
            continue
        out.append((fields[0], int(fields[1]), fields[3] == "1"))
    return out


def parse_self_cgroup(text: str) -> dict[str, int]:
    """name field -> hierarchy id, for the v1 hierarchies (`0::/path`, the v2 line, is skipped)."""
    out = {}
    for line in text.splitlines():
        hid, sep, rest = line.partition(":")
        field, sep2, _path = rest.partition(":")
        if sep and sep2 and field and hid.isdigit():
            out[field] = int(hid)
    return out


def hierarchy_name(controllers: list[str], named: str, order: list[str]) -> str:
    """The /proc/<pid>/cgroup field of a hierarchy: controllers in `order`, then name=."""
    rank = {c: i for i, c in enumerate(order)}
    parts = sorted(controllers, key=lambda c: (rank.get(c, len(rank)), c))
    if named:
        parts.append(f"name={named}")
    return ",".join(parts)


def _split_options(options: tuple[str, ...], controllers: set[str]) -> tuple[list[str], str]:
    found, named = [], ""
    for opt in options:
        if opt.startswith("name="):
            named = opt.removeprefix("name=")
        elif opt in controllers:
            found.append(opt)
    return found, named


def parse_hierarchies(mounts: Iterable[Mount], proc_cgroups: str, self_cgroup: str) -> list[Hierarchy]:
    """The mounted v1 hierarchies, one per hierarchy however often it is mounted."""
    table = parse_proc_cgroups(proc_cgroups)
    order = [name for name, _hid, _on in table]
    hid_of_controller = {name: hid for name, hid, _on in table}
    hid_of_name = parse_self_cgroup(self_cgroup)
    found: dict[object, Hierarchy] = {}
    for m in mounts:
        if m.fstype != "cgroup" or m.root != "/":  # not v1, or a bind mount of a subdirectory
            continue
        controllers, named = _split_options(m.super_options, set(order))
        name = hierarchy_name(controllers, named, order)
        if not name:
            continue
        hid = hid_of_controller.get(controllers[0], 0) if controllers else hid_of_name.get(name, 0)
        key: object = hid or ("dev", m.dev)  # hierarchy id when known, else the superblock
        seen = found.get(key)
        if seen is None:
            found[key] = Hierarchy(name, hid, tuple(c for c in order if c in controllers), (m.mount_point,))
        elif m.mount_point not in seen.mount_points:
            found[key] = Hierarchy(seen.name, seen.hierarchy_id, seen.controllers,
                                   (*seen.mount_points, m.mount_point))
    return sorted(found.values(), key=lambda h: (h.hierarchy_id, h.name))


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def discover(mounts: Iterable[Mount]) -> list[Hierarchy]:
    """The v1 hierarchies this process sees now, among its mounts (bpffs_sync.mountinfo.read())."""
    return parse_hierarchies(mounts, _read(PROC_CGROUPS), _read(SELF_CGROUP))
