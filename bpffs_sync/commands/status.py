"""`bpffs-sync status`: the daemon (running iff it holds the bpffs's lock: rundir.py) and the kernel
objects it owns."""

from __future__ import annotations

import os
import time
from typing import Any

from bpffs_sync import dirfd, libbpf, rundir
from bpffs_sync.backends import kernel_a1
from bpffs_sync.errors import LibbpfError, SyncError, Tampered
from bpffs_sync.mirror import bpffs, forest
from bpffs_sync.paths import MIRROR_V1, Layout
from bpffs_sync.printable import escape
from bpffs_sync.programs import CATALOGUE, StatProgram
from bpffs_sync.stats import COLLECTOR_PIN, private_dir


def daemon_status(layout: Layout) -> dict[str, Any]:
    """Whether a daemon runs on this bpffs (the lock is held) and, when the holder wrote it, its
    telemetry. A status file alone, or a live pid in it, says nothing."""
    who = rundir.holder(layout.bpffs)
    if who is None:
        return {"running": False}
    doc: dict[str, Any] = {"running": who.role != rundir.ROLE_CLEAN, "pid": who.pid, "role": who.role}
    telemetry = rundir.read_telemetry(layout.bpffs, who)
    if telemetry is not None:
        doc.update(telemetry)
        if doc.get("last_pass_at"):
            doc["seconds_since_last_pass"] = round(time.time() - float(doc["last_pass_at"]), 3)
    return doc


def _program(layout: Layout, spec: StatProgram) -> dict[str, Any]:
    """The stat's pinned map and collector, read through its checked private directory (never a path
    a planted symlink could redirect)."""
    out: dict[str, Any] = {"map_pinned": False, "collector_pinned": False}
    dfd = private_dir(layout, spec.name, create=False)
    if dfd is None:
        out["map_error"] = f"no directory {layout.private_path(spec.name)}"
        return out
    try:
        map_pin = layout.private_path(spec.name, spec.stats_map)
        try:
            fd = libbpf.obj_get_at(dfd, spec.stats_map, map_pin)
            try:
                info = libbpf.map_info(fd, map_pin)
                entries = sum(1 for _ in libbpf.map_keys(fd, info.key_size, map_pin))
            finally:
                os.close(fd)
            out.update(map_pinned=True, map_id=info.map_id, map_entries=entries, map_max_entries=info.max_entries)
        except LibbpfError as err:
            out["map_error"] = str(err)
        pin = layout.private_path(spec.name, COLLECTOR_PIN)
        try:
            fd = libbpf.obj_get_at(dfd, COLLECTOR_PIN, pin)
            try:
                link = libbpf.link_info(fd, pin)
            finally:
                os.close(fd)
            out.update(collector_pinned=True, collector_link_id=link.link_id,
                       collector_program=libbpf.prog_info_by_id(link.prog_id).name)
        except LibbpfError as err:
            out["collector_error"] = str(err)
    finally:
        os.close(dfd)
    return out


def _mirror(bpffs_root: str, parts: tuple[str, ...], stats: frozenset[str]) -> dict[str, int]:
    """Directories and stat files below <bpffs>/<parts>, counted relative to directory fds
    (dirfd.descend: no symlink followed, no path length or recursion limit)."""
    top = bpffs.open_sub(bpffs_root, parts, create=False)
    if top is None:
        return {"dirs": 0, "stat_files": 0}
    counts = {"dirs": 1, "stat_files": 0}

    def children(fd: int, rel: tuple[str, ...]) -> list[tuple[str, bool]] | None:
        try:
            with os.scandir(fd) as it:
                return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        except OSError:
            return None

    def enter(fd: int, rel: tuple[str, ...], entry: tuple[str, bool]) -> tuple[tuple[str, ...], int] | None:
        name, is_dir = entry
        if name in stats:
            counts["stat_files"] += 1
            return None
        if not is_dir or len(rel) >= dirfd.MAX_DEPTH:
            return None
        try:  # never into a mount point: another filesystem's entries are not the mirror's
            child = dirfd.open_dir(fd, name, name)
        except SyncError:
            return None
        counts["dirs"] += 1
        return (*rel, name), child

    try:
        dirfd.descend(top, (), children, enter)
    finally:
        os.close(top)
    return counts


def _v1_trees(layout: Layout) -> dict[str, Any]:
    """What is under <bpffs>/cgroup-v1: each hierarchy's counts, each controller symlink's target."""
    out: dict[str, Any] = {}
    stats = frozenset(CATALOGUE)
    try:
        top = forest.top_actual(layout.bpffs)
    except Tampered as err:  # planted at the sticky root: not ours, shown, not fatal
        return {"not_ours": err.detail}
    for name, target in sorted(top.items()):
        if target == "":
            out[name] = _mirror(layout.bpffs, (MIRROR_V1, name), stats)
        elif target is not None:
            out[name] = {"symlink": target}
    return out


def _kernel(layout: Layout) -> dict[str, Any] | None:
    """The patched kernel's mirror: is this bpffs its instance, and every cgroup stat link; None on a stock kernel."""
    if not kernel_a1.supported():
        return None
    return {
        "mirror_enabled": kernel_a1.mirror_enabled(layout.bpffs),
        "links": [kernel_a1.link_doc(d) for d in libbpf.cgroup_stat_links()],
    }


def _has_private(layout: Layout, stat: str) -> bool:
    fd = private_dir(layout, stat, create=False)
    if fd is None:
        return False
    os.close(fd)
    return True


def status(layout: Layout, specs: list[StatProgram]) -> dict[str, Any]:
    names = {s.name for s in specs}
    names |= {n for n in CATALOGUE if _has_private(layout, n)}  # loaded for a v1 tree
    return {
        "kernel": _kernel(layout),
        "bpffs": layout.bpffs,
        "cgroup_root": layout.cgroup_root,
        "mirror_root": layout.mirror_root,
        "daemon": daemon_status(layout),
        "programs": {n: _program(layout, CATALOGUE[n]) for n in sorted(names)},
        "mirror": _mirror(layout.bpffs, layout.mirror_parts, frozenset(names)),
        "v1": _v1_trees(layout),
    }


def _daemon_line(d: dict[str, Any]) -> str:
    if not d.get("running"):
        return f"not running (bpffs-sync {d['role']}, pid {d['pid']}, holds the lock)" if "pid" in d else "not running"
    line = f"running (pid {d['pid']})"
    if "passes" not in d:
        return line + (", no telemetry yet" if d.get("role") == rundir.ROLE_RUN else ", not a bpffs-sync run")
    line += (f", {d['passes']} passes, {d['full_passes']} full, {d['ops_applied']} ops, {d['op_errors']} errors, "
             f"{d['watches']} watches, last full pass {d['last_full_seconds']:.3f} s")
    restarts = d.get("watcher_restarts", 0)
    return line + (f", {restarts} watcher restarts (last: {d.get('last_watcher_restart', '')})" if restarts else "")


def to_text(doc: dict[str, Any]) -> str:
    d = doc["daemon"]
    lines = [f"mirror   {doc['mirror_root']}  <-  {doc['cgroup_root']}"]
    lines.append(f"daemon   {_daemon_line(d)}")
    for name, p in doc["programs"].items():
        if p["map_pinned"]:
            lines.append(f"program  {name}: map {p['map_id']} ({p['map_entries']}/{p['map_max_entries']} entries), "
                         f"collector {p.get('collector_program', 'MISSING')}")
        else:
            lines.append(f"program  {name}: not loaded")
    m = doc["mirror"]
    lines.append(f"files    {m['dirs']} directories, {m['stat_files']} stat files")
    k = doc["kernel"]
    if k is not None:
        lines.append(f"kernel   cgroup stat links: {len(k['links'])}; mirror "
                     f"{'on this bpffs' if k['mirror_enabled'] else 'not on this bpffs'}")
        lines += [f"kernel   link {x['id']} {x['name']}: root cgroup {x['cgroup_id'] or '(detached)'}, "
                  f"{x['nr_files']} files, {x['nr_errors']} errors" for x in k["links"]]
    trees = d.get("trees", {}) if d.get("running") else {}
    for name, v in doc["v1"].items():
        if name == "not_ours":
            lines.append(f"v1       cgroup-v1: not ours, left alone ({v})")
            continue
        if "symlink" in v:
            lines.append(f"v1       cgroup-v1/{name} -> {v['symlink']}")
            continue
        t = trees.get(f"cgroup-v1/{name}", {})
        src = f"  <-  {t['cgroup_root']} ({', '.join(t['stats']) or 'no stats'})" if t else ""
        lines.append(f"v1       cgroup-v1/{name}: {v['dirs']} directories, {v['stat_files']} stat files{src}")
    return "\n".join(escape(line) for line in lines)  # names are data: each line one line, never obeyed
