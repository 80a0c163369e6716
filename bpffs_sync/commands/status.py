"""`bpffs-sync status`: the daemon (running iff it holds the bpffs's lock: rundir.py), the stats'
shared maps and collectors, and the chosen backend's own part (Backend.status: the user-space
mirror's trees, Approach 1's links and mirror, or Approach 2's links)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from bpffs_sync import libbpf, rundir
from bpffs_sync.backends.base import Backend, Request
from bpffs_sync.commands import common
from bpffs_sync.errors import LibbpfError
from bpffs_sync.loader import COLLECTOR_PIN, private_dir
from bpffs_sync.paths import Layout
from bpffs_sync.printable import escape
from bpffs_sync.programs import CATALOGUE, StatProgram


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
    a planted symlink could redirect). A stat with no collector has neither: `stateless`."""
    out: dict[str, Any] = {"map_pinned": False, "collector_pinned": False}
    if spec.stats_map is None:
        return {**out, "stateless": True}
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


def _has_private(layout: Layout, stat: str) -> bool:
    fd = private_dir(layout, stat, create=False)
    if fd is None:
        return False
    os.close(fd)
    return True


def status(backend: Backend, req: Request) -> dict[str, Any]:
    """`status --json`: what every mode shares, then the backend's part (Backend.status)."""
    layout = req.layout
    names = {s.name for s in req.specs}
    names |= {n for n in CATALOGUE if _has_private(layout, n)}  # loaded for a v1 tree or another mode
    return {
        "mode": backend.mode,
        "bpffs": layout.bpffs,
        "cgroup_root": layout.cgroup_root,
        "mirror_root": layout.mirror_root,
        "daemon": daemon_status(layout),
        "programs": {n: _program(layout, CATALOGUE[n]) for n in sorted(names)},
        **backend.status(req),
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


def _hierarchy_line(h: dict[str, Any]) -> str:
    """One row of the kernel's per-hierarchy counts (kernel_a1.hierarchy_status)."""
    what = "v2" if not h["hierarchy_id"] else f"hierarchy {h['hierarchy_id']} {h['hierarchy'] or '(not mounted here)'}"
    if "dirs" in h:
        tree = f"{h['tree']}: {h['dirs']} directories, {h['stat_files']} stat files"
    elif h["tree"] is None:
        tree = "its tree not counted (the hierarchy is not mounted here: its name is unknown)"
    else:
        tree = f"{h['tree']} not counted (this bpffs is not the mirror's)"
    return f"kernel   {what}: {h['links']} links, nr_files {h['nr_files']}, {h['nr_errors']} errors; {tree}"


def to_text(doc: dict[str, Any]) -> str:
    d = doc["daemon"]
    lines = [f"mirror   {doc['mirror_root']}  <-  {doc['cgroup_root']}"]
    lines.append(f"daemon   {_daemon_line(d)}")
    for name, p in doc["programs"].items():
        if p["map_pinned"]:
            lines.append(f"program  {name}: map {p['map_id']} ({p['map_entries']}/{p['map_max_entries']} entries), "
                         f"collector {p.get('collector_program', 'MISSING')}")
        elif p.get("stateless"):
            lines.append(f"program  {name}: no map, no collector (its reader computes each read)")
        else:
            lines.append(f"program  {name}: not loaded")
    m = doc.get("mirror")
    if m is not None:
        lines.append(f"files    {m['dirs']} directories, {m['stat_files']} stat files")
    k = doc.get("kernel")
    if k is not None:
        lines.append(f"kernel   cgroup stat links: {len(k['links'])}; mirror "
                     f"{'on this bpffs' if k['mirror_enabled'] else 'not on this bpffs'}")
        lines += [f"kernel   link {x['id']} {x['name']}: root cgroup {x['cgroup_id'] or '(detached)'}"
                  f"{' on hierarchy ' + str(x['hierarchy_id']) if x.get('hierarchy_id') else ''}, "
                  f"{x['nr_files']} files, {x['nr_errors']} errors" for x in k["links"]]
        lines += [_hierarchy_line(h) for h in k.get("hierarchies", [])]
        lines += [f"kernel   cgroup-v1/{name} -> {target}" for name, target in k.get("v1_symlinks", {}).items()]
        if "not_ours" in k:
            lines.append(f"kernel   not ours, left alone ({k['not_ours']})")
    a2 = doc.get("approach_2")
    if a2 is not None:
        lines.append(f"cgroupfs Approach 2 links: {len(a2['links'])}")
        lines += [f"cgroupfs link {x['id']} {x['name']}: root cgroup {x['cgroup_id'] or '(detached)'} on "
                  f"{'the v2 hierarchy' if not x['hierarchy_id'] else 'hierarchy ' + str(x['hierarchy_id'])}, "
                  f"{x['nr_files']} files, {x['nr_errors']} errors" for x in a2["links"]]
    trees = d.get("trees", {}) if d.get("running") else {}
    for name, v in doc.get("v1", {}).items():
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


def main(args: argparse.Namespace) -> int:
    chosen = common.backend("status", args)
    layout, specs = common.prepare(args, mount=False, objects=False)
    doc = status(chosen, common.request(args, layout, specs))
    if args.json:
        common.print_json(doc)
    else:
        print(to_text(doc))
    return common.EXIT_OK
