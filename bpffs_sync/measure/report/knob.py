"""Knobs where they are read (issue 22, items 5 and 7; issue 20 item 2): a per-cgroup u64 knob read
from BPF in the scheduling path, its write from user space, and who may write it, three ways: a
cgroupfs user.* xattr, a map keyed by cgroup id, and (on a kernel with kernel-approach1 patch 13)
Approach 1's writable file, "bpffs knob file": a BPF_F_CGROUP_STAT_WRITE link of knob_read.bpf.c's
knob_file program, whose writes store the knob in cgroup storage (file_knobs).

hot_reads   bench/report/bpf/knob_read.bpf.c on tp_btf/sched_switch, for the cgroup of the task
            switched in: bpf_cgroup_read_xattr() of a cgroupfs user.* xattr against a map lookup
            keyed by cgroup id and, with the file, bpf_cgrp_storage_get() of what the file's writes
            keep, each timed with bpf_ktime_get_ns() around the read alone, plus the clock pair with
            nothing between (its floor), in the same events in a rotating order. The file's value
            is written through the file (write(2)), so the storage route reading it is the proof
            that a file write reaches a program in the scheduling path.
            Why this clock and not BPF_PROG_RUN of a loop: the read is timed where a scheduler reads
            a knob, with the cache state of a context switch (a loop of N reads in one program keeps
            everything hot, and the kfunc's RCU argument comes from a task there, not from a test
            context); the price is the clock pair inside every sample, which the clock row shows.
            A ping-pong of two processes in the knob's cgroup makes the switches.
writes      the user-space write of the same 8 bytes each way, the C loop (readloop xattr_set8,
            mapupdate and, with the file, filewrite8: write(2) on an fd held open; the u64
            counter, so each write stores a new value of the same size), in interleaved rounds
            whose order is a seeded shuffle.
who_may_write  each cell a check run now: setxattr of user.* on a delegated cgroup (chown'ed to
            uid 65534, as cgroup delegation does) and a map update through its bpffs pin in two
            deployment modes, as root, as the delegated owner, as another unprivileged user, and as
            the delegated owner inside a cgroup namespace (unshare -C from inside the delegated
            cgroup); with the file, a write(2) to its knob file of a cgroup the delegated owner made
            below the delegation point, and of the delegation point itself (the kernel's rule: the
            owner of the cgroupfs directory of the cgroup's parent, or CAP_SYS_ADMIN).

Where the kernel has no file writes (its BTF has no BPF_F_CGROUP_STAT_WRITE: a stock kernel,
the host) the file's cells say "not in this kernel" (file_support(), computed from the BTF).

    python -m bpffs_sync.measure.report.knob OUT.json [--n-read N --n-write N --rounds R --seed S]
runs it alone (on a cgroup subtree and bpffs of its own: the guest run of issue 22 item 7).

Every cgroup, pin and xattr made here is removed after, also on failure (an ExitStack; a cgroup's
xattrs go with the directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

from bpffs_sync import libbpf, series
from bpffs_sync.errors import LibbpfError
from bpffs_sync.measure import ffi
from bpffs_sync.measure.report import compiled, measures, stats
from bpffs_sync.sandbox import remove_cgroup_tree

XATTR = "user.bpffs_sync_knob"  # knob_read.bpf.c reads this name
VALUE = 0x0123456789ABCDEF  # the knob both routes hold: the same 8 bytes
ROUTES = ("clock", "xattr", "map", "storage")  # knob_read.bpf.c's ROUTE_* order
KNOB_ROUTES = ("xattr", "map", "storage")  # the routes that read the knob (clock reads nothing)
SAMPLES = 4096  # KNOB_SAMPLES: per route per CPU
CPUS = 64  # KNOB_CPUS
_HEAD = struct.Struct("=4I4I4QQQ")  # n, errors, last, events, xattr_buf
SLOT_SIZE = _HEAD.size + len(ROUTES) * SAMPLES * 4
FILE_NAME = "bpffs_sync_knob"  # the writable link's file: <mirror>/cgroup/<path>/bpffs_sync_knob
OWNER = 65534  # the delegated subtree's owner (nobody), as in a delegation to an unprivileged user
OTHER = 65533  # another unprivileged user, owning nothing here
KNOB_GID = 64222  # the knob map pin's group in the group-writable deployment (no name needed)
PIN_MODES = {  # the map pin's deployments: (mode, gid, in words)
    "0600 root": (0o600, 0, "bpffs's default for a pin (BPF_OBJ_PIN), what the report used"),
    f"0660 root:{KNOB_GID}": (0o660, KNOB_GID, f"a group-writable pin; the delegated owner is in gid {KNOB_GID}, "
                                              "the other user is not"),
}
SUBJECTS = ("root", f"delegated owner (uid {OWNER})", f"another user (uid {OTHER})",
            f"delegated owner in a cgroup namespace (unshare -C, uid {OWNER})")
KFUNC = "bpf_cgroup_read_xattr"
FILE_COLUMNS = ("write(2) to the knob file of a cgroup the delegated owner made",
                "write(2) to the knob file of the delegation point")
_PINGPONG = ("import os, sys\nn = int(sys.argv[1])\nar, aw = os.pipe()\nbr, bw = os.pipe()\n"
             "if os.fork() == 0:\n    for _ in range(n):\n        os.read(ar, 1)\n        os.write(bw, b'x')\n"
             "    os._exit(0)\nfor _ in range(n):\n    os.write(aw, b'x')\n    os.read(br, 1)\nos.wait()\n")


# --- pure parts ------------------------------------------------------------------------------------


def parse_slot(raw: bytes) -> dict[str, Any]:
    """One CPU's struct knob_samples: per route its samples (ns), failed reads and last value."""
    head = _HEAD.unpack_from(raw)
    k = len(ROUTES)
    n, errors, last, events = head[0:k], head[k:2 * k], head[2 * k:3 * k], head[3 * k]
    out: dict[str, Any] = {"events": events}
    for i, route in enumerate(ROUTES):
        count = min(n[i], SAMPLES)
        ns = list(struct.unpack_from(f"={count}I", raw, _HEAD.size + i * SAMPLES * 4))
        out[route] = {"samples_ns": ns, "errors": errors[i], "last": last[i]}
    return out


def merge_slots(slots: list[dict[str, Any]], value: int, skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """The CPUs' slots as one entry per route, each a measures.series with its errors; `equal`: every
    knob route taken read `value` with no failed read (the equal-work check); a route with no sample is
    not_measured. skipped: the routes not taken, each with why (storage: no file linked; xattr: no
    kfunc), left out of the check."""
    skipped = skipped or {}
    out: dict[str, Any] = {"events": sum(s["events"] for s in slots)}
    for route in ROUTES:
        if route in skipped:
            out[route] = stats.not_measured(skipped[route])
            continue
        used = [s[route] for s in slots if s[route]["samples_ns"]]
        samples = [x for s in used for x in s["samples_ns"]]
        if not samples:
            out[route] = stats.not_measured("no sampled switch into the knob's cgroup")
            continue
        out[route] = measures.series(used[-1]["last"], samples) | {"errors": sum(s["errors"] for s in used)}
    reads = [out[r] for r in KNOB_ROUTES if r not in skipped]
    out["equal"] = all(stats.is_measured(e) and e["errors"] == 0 and e["value"] == value for e in reads)
    return out


def kfunc_in_btf(name: str, btf: bytes) -> bool:
    """Whether a kernel's BTF (its raw bytes) names a function `name` (its string section holds it)."""
    return b"\0" + name.encode() + b"\0" in btf


def file_support(write_flag: int | None) -> str:
    """Empty when the kernel has Approach 1's file writes (kernel-approach1 patch 13: write_flag, its
    BPF_F_CGROUP_STAT_WRITE as its BTF says, series.Uapi.write_flag), else the cells' reason,
    "not in this kernel: ..."."""
    if write_flag is not None:
        return ""
    return (f"not in this kernel: its BTF has no {series.WRITE_FLAG} (Approach 1's file writes: "
            "kernel-approach1 patch 13)")


def write_flag() -> int | None:
    """This kernel's BPF_F_CGROUP_STAT_WRITE, read from its BTF (None: no file writes)."""
    uapi = series.carried().uapi
    return uapi.write_flag if uapi is not None else None


def may_write_file(subject: str, delegation_point: bool) -> bool:
    """The kernel's rule for opening a knob file for writing (patch 13, bpf_cgroup_stat_may_write):
    the owner of the cgroupfs directory of the cgroup's parent, or CAP_SYS_ADMIN. The delegated
    owner owns the delegation point, so it may write the files of the cgroups below it, not the
    delegation point's own (its parent is root's); a cgroup namespace changes nothing."""
    if subject == "root":
        return True
    return subject.startswith("delegated owner") and not delegation_point


def check_cell(rc: int, stderr: str, ok: str, pin: str = "") -> str:
    """A write check's cell from readloop's exit: 'yes: <ok>' or 'no: <the error it printed>' (the
    pin's path, when given, named 'the pin')."""
    if rc == 0:
        return f"yes: {ok}"
    last = (stderr.strip().splitlines() or [f"exit {rc}"])[-1].removeprefix("readloop: ")
    return "no: " + (last.replace(pin, "the pin") if pin else last)[:100]


# --- the hot-path read -----------------------------------------------------------------------------


def _enter(cgroup: str) -> None:
    with open(os.path.join(cgroup, "cgroup.procs"), "w", encoding="ascii") as f:
        f.write(str(os.getpid()))


def _cg_key(cgid: int) -> bytes:
    return struct.pack("=IIQ", 0, 0, cgid)  # struct cg_key, hierarchy 0 (v2)


@contextlib.contextmanager
def _cgroup(parent: str, name: str) -> Iterator[str]:
    path = os.path.join(parent, f"{name}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        remove_cgroup_tree(path)


def hot_reads(obj: libbpf.BpfObject, cgroup: str, n: int, knob_file: str | None, storage: str, *,
              kfunc: bool = True) -> dict[str, Any]:
    """knob_read's routes over the switches of a ping-pong in `cgroup` (about n per route, at most
    SAMPLES a CPU), on the loaded object `obj`. The xattr and the map entry hold VALUE, and so does the
    cgroup's knob file (knob_file: written with write(2), read back by the storage route; None: no
    file, `storage` says why); the program is detached before return."""
    cgid = os.stat(cgroup).st_ino
    value = struct.pack("=Q", VALUE)
    os.setxattr(cgroup, XATTR, value)
    ffi.map_update(obj.map_fd("knobs"), _cg_key(cgid), value, "knobs")
    config = obj.map_fd("knob_config")
    if knob_file is not None:
        fd = os.open(knob_file, os.O_WRONLY)
        try:
            os.write(fd, value)  # a stream: pwrite is ESPIPE, the position is ignored
        finally:
            os.close(fd)
        ffi.map_update(config, struct.pack("=I", 1), struct.pack("=Q", 1), "knob_config")
    ffi.map_update(config, struct.pack("=I", 0), struct.pack("=Q", cgid), "knob_config")
    with obj.program("knob_switch" if kfunc else "knob_switch_nox").attach():
        subprocess.run([sys.executable, "-c", _PINGPONG, str(max(1, n))], check=True, timeout=600,
                       preexec_fn=lambda: _enter(cgroup))
    ffi.map_update(config, struct.pack("=I", 0), struct.pack("=Q", 0), "knob_config")
    fd = obj.map_fd("samples")
    slots = [ffi.map_lookup(fd, struct.pack("=I", cpu), SLOT_SIZE, "samples")
             for cpu in range(min(CPUS, os.cpu_count() or 1))]
    skipped = {} if knob_file is not None else {"storage": storage}
    if not kfunc:
        skipped["xattr"] = f"this kernel has no {KFUNC}() kfunc (6.16+, CONFIG_BPF_LSM)"
    out = merge_slots([parse_slot(s) for s in slots if s is not None], VALUE, skipped)
    return out | {"hook": "tp_btf/sched_switch (the task switched in)", "value": VALUE,
                  "timing": "bpf_ktime_get_ns() before and after the read alone; route clock: the pair with nothing "
                           "between",
                  "storage_written": "the knob file, write(2) of the 8 bytes" if knob_file is not None else storage}


# --- writes and who may write ----------------------------------------------------------------------


def writes(readloop: str, cgroup: str, map_pin: str, n: int, *, rounds: int, seed: int,
           knob_file: str | None = None, storage: str = "") -> dict[str, Any]:
    """setxattr of the knob's 8 bytes against a map update of the same 8 bytes and, with knob_file, a
    write(2) of them to the cgroup's knob file (C p50s, interleaved); else file_write says why not."""
    cgid = str(os.stat(cgroup).st_ino)
    loops = {"xattr_set": ["xattr_set8", cgroup, XATTR], "map_update": ["mapupdate", map_pin, "0", cgid]}
    if knob_file is not None:
        loops["file_write"] = ["filewrite8", knob_file]
    parts: dict[str, list[list[int]]] = {k: [] for k in loops}
    orders = measures.round_orders(list(loops), rounds, seed)
    for order, count in zip(orders, measures.split(n, rounds), strict=True):
        for key in order:
            parts[key].append(measures.c_loop(readloop, loops[key], max(1, count))[1])
    out: dict[str, Any] = {k: measures.series(VALUE, [x for p in v for x in p]) for k, v in parts.items()}
    if knob_file is None:
        out["file_write"] = stats.not_measured(storage)
    return out | {"order": {"seed": seed, "rounds": orders}}


def _runner(readloop: str, stack: ExitStack) -> str:
    """A copy of the C loop in a directory any uid can enter (the build may sit under a 0700 home)."""
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bpffs-sync-knob-"))
    os.chmod(tmp, 0o755)
    return shutil.copy2(readloop, tmp)


def _as(subject: str, binary: str, args: list[str], cgroup: str) -> str:
    """Run readloop ARGS (one operation) as `subject`; the cell says what happened."""
    extra = [KNOB_GID] if subject != "root" and not subject.startswith("another") else []
    uid = 0 if subject == "root" else OTHER if subject.startswith("another") else OWNER
    cmd = [binary, args[0], "1", *args[1:]]
    ns = "namespace" in subject
    if ns:  # enter the delegated cgroup, then a new cgroup namespace rooted there, then drop to the owner
        cmd = ["unshare", "-C", "--", "setpriv", f"--reuid={OWNER}", f"--regid={OWNER}", f"--groups={KNOB_GID}",
               "--", "sh", "-c", 'grep ^0:: /proc/self/cgroup >&2; exec "$@"', "sh", *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30,
                              user=None if ns or uid == 0 else uid, group=None if ns or uid == 0 else uid,
                              extra_groups=None if ns or uid == 0 else extra,
                              preexec_fn=(lambda: _enter(cgroup)) if ns else None)
    except OSError as err:
        return f"not measured: cannot run the check: {err.strerror}"
    if ns:
        seen = proc.stderr.strip().splitlines()[:1]
        where = seen[0] if seen else "?"
        if where.strip() != "0::/":
            return f"not measured: /proc/self/cgroup read {where!r} in the namespace, not '0::/'"
        proc = subprocess.CompletedProcess(cmd, proc.returncode, proc.stdout,
                                           "\n".join(proc.stderr.strip().splitlines()[1:]))
    return check_cell(proc.returncode, proc.stderr, "wrote" + (" (its /proc/self/cgroup: 0::/)" if ns else ""),
                      args[1] if args[0] == "mapupdate" else "")


def delegate(cgroup: str, uid: int) -> None:
    """Hand a cgroup to uid as cgroup delegation does (cgroup-v2.rst: the directory and its
    cgroup.procs, cgroup.threads and cgroup.subtree_control chown'ed)."""
    for name in ("", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
        os.chown(os.path.join(cgroup, name), uid, uid)


def who_may_write(readloop: str, parent: str, map_fd: int, pin_dir: str, *,
                  file_of: Callable[[str], str] | None = None, storage: str = "") -> dict[str, Any]:
    """Rows: SUBJECTS; columns: setxattr user.* on the delegated cgroup, a map update through the
    knob map's pin in each PIN_MODES deployment, and FILE_COLUMNS: a write(2) to the knob file
    (file_of(cgroup): its path; None: no file, `storage` says why) of a cgroup the delegated owner
    made below the delegation point, and of the delegation point. Every cell is one write tried now;
    "rule" holds what the kernel's rule (may_write_file) says of each file cell."""
    with ExitStack() as stack:
        binary = _runner(readloop, stack)
        cg = stack.enter_context(_cgroup(parent, "knob-delegated"))
        delegate(cg, OWNER)
        child = os.path.join(cg, "made-by-owner")
        if file_of is not None:  # the owner makes it, as a delegated subtree's owner does
            subprocess.run(["mkdir", child], check=True, timeout=30, user=OWNER, group=OWNER)
        cgid = str(os.stat(cg).st_ino)
        pin = os.path.join(pin_dir, "knobs")
        libbpf.obj_pin(map_fd, pin)
        stack.callback(os.unlink, pin)
        rows: dict[str, dict[str, str]] = {s: {} for s in SUBJECTS}
        for subject in SUBJECTS:
            rows[subject]["setxattr user.* on the delegated cgroup"] = _as(subject, binary,
                                                                          ["xattr_set8", cg, XATTR], cg)
        for label, (mode, gid, _) in PIN_MODES.items():
            os.chown(pin, 0, gid)
            os.chmod(pin, mode)
            for subject in SUBJECTS:
                rows[subject][f"map update, pin {label}"] = _as(subject, binary, ["mapupdate", pin, "0", cgid], cg)
        rule: dict[str, dict[str, bool]] = {s: {} for s in SUBJECTS}
        for column, target in zip(FILE_COLUMNS, (child, cg), strict=True):
            for subject in SUBJECTS:
                rule[subject][column] = may_write_file(subject, target == cg)
                rows[subject][column] = storage.split(":", 1)[0] if file_of is None else \
                    _as(subject, binary, ["filewrite8", file_of(target)], cg)
    return {"rows": rows, "columns": list(next(iter(rows.values()))),
            "modes": {k: v[2] for k, v in PIN_MODES.items()}, "rule": rule,
            "delegation": f"the cgroup, its cgroup.procs, cgroup.threads and cgroup.subtree_control chown'ed to "
                          f"uid {OWNER}"}


# --- the measure -----------------------------------------------------------------------------------


def link_writable(prog_fd: int, cgroup_fd: int, name: str, flag: int) -> int:
    """BPF_LINK_CREATE of a cgroup stat link with BPF_F_CGROUP_STAT_WRITE (`flag`, this kernel's) at
    the cgroup open at cgroup_fd; the link fd."""
    return libbpf.link_create_cgroup_stat(prog_fd, cgroup_fd, name, flags=flag)


def _mirror(stack: ExitStack) -> str:
    """A bpffs holding Approach 1's mirror: the one mounted with cgroup_mirror, else one mounted here
    (unmounted on exit)."""
    from bpffs_sync.mirror import bpffs
    from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

    held = next((m.mount_point for m in bpffs.mounts() if m.fstype == "bpf" and "cgroup_mirror" in m.super_options),
                None)
    if held is not None:
        return held
    fs = mount_bpffs("cgroup_mirror")
    stack.callback(umount_bpffs, fs)
    return fs


def _file_link(obj: libbpf.BpfObject, root: str, flag: int, stack: ExitStack) -> Callable[[str], str]:
    """knob_file linked with BPF_F_CGROUP_STAT_WRITE on `root` (destroyed on exit); the path of a
    cgroup's knob file below it."""
    from bpffs_sync.preflight import default_cgroup_root

    fs, v2 = _mirror(stack), default_cgroup_root()
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        link = link_writable(obj.program("knob_file").fd(), dir_fd, FILE_NAME, flag)
    finally:
        os.close(dir_fd)
    stack.callback(os.close, link)

    def file_of(cgroup: str) -> str:
        return os.path.join(fs, "cgroup", os.path.relpath(cgroup, v2), FILE_NAME)
    return file_of


def run(readloop: str, cgroup_root: str, bpffs: str, *, n_read: int, n_write: int, rounds: int,
        seed: int) -> dict[str, Any]:
    """All of it on cgroups and pins of its own under cgroup_root and bpffs, removed after. One
    knob_read object: knob_switch (knob_switch_nox, without the xattr route, when the kernel has no
    bpf_cgroup_read_xattr kfunc), knob_file (when it has file writes,
    linked on cgroup_root with BPF_F_CGROUP_STAT_WRITE: "file"), and the knob map."""
    obj_path = compiled.bpf_object("knob_read")
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        kfunc = kfunc_in_btf(KFUNC, f.read())
    flag = write_flag()
    storage = file_support(flag)
    out: dict[str, Any] = {"file": storage or f"linked: {FILE_NAME}, BPF_F_CGROUP_STAT_WRITE"}
    with ExitStack() as stack:
        cg = stack.enter_context(_cgroup(cgroup_root, "knob-hot"))
        pin_dir = os.path.join(bpffs, f"knob-{uuid.uuid4().hex[:8]}")
        os.mkdir(pin_dir)
        stack.callback(os.rmdir, pin_dir)
        obj = stack.enter_context(libbpf.BpfObject(obj_path))
        obj.program("knob_switch").set_autoload(kfunc)
        obj.program("knob_switch_nox").set_autoload(not kfunc)
        obj.program("knob_file").set_autoload(not storage)
        if not storage:
            obj.program("knob_file").set_cgroup_stat()
        obj.load()
        file_of = None
        if flag is not None:
            try:
                file_of = _file_link(obj, cgroup_root, flag, stack)
            except (LibbpfError, OSError) as err:
                storage = f"not measured: the knob file's link: {err}"[:300]
                out["file"] = storage
        out["read"] = measures._attempt(lambda: hot_reads(obj, cg, n_read, file_of(cg) if file_of else None,
                                                          storage, kfunc=kfunc))
        map_fd = obj.map_fd("knobs")
        pin = os.path.join(pin_dir, "knobs_w")
        libbpf.obj_pin(map_fd, pin)
        stack.callback(os.unlink, pin)
        os.setxattr(cg, XATTR, struct.pack("=Q", VALUE))
        out["write"] = measures._attempt(lambda: writes(readloop, cg, pin, n_write, rounds=rounds, seed=seed,
                                                        knob_file=file_of(cg) if file_of else None, storage=storage))
        out["who"] = measures._attempt(lambda: who_may_write(readloop, cgroup_root, map_fd, pin_dir, file_of=file_of,
                                                               storage=storage))
    return out


def alone(readloop: str, *, n_read: int, n_write: int, rounds: int, seed: int) -> dict[str, Any]:
    """run() on a cgroup subtree and a bpffs of its own (removed after), with the kernel it ran on."""
    import platform

    from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, umount_bpffs

    fs, root = mount_bpffs(), make_cgroup_root("bpffs-sync-knob")
    try:
        doc = run(readloop, root, fs, n_read=n_read, n_write=n_write, rounds=rounds, seed=seed)
    finally:
        remove_cgroup_tree(root, timeout=60)
        umount_bpffs(fs)
    return doc | {"kernel": platform.release(), "version": platform.version(), "cpus": os.cpu_count() or 0,
                  "plan": {"n_read": n_read, "n_write": n_write, "rounds": rounds, "seed": seed}}


def main(argv: list[str] | None = None) -> int:
    """The knob measure alone (alone()), into OUT.json, the C loop built here."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="report: the knob measure alone (hot read, writes, who may write)")
    ap.add_argument("out")
    ap.add_argument("--n-read", type=int, default=2000)
    ap.add_argument("--n-write", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    doc = alone(compiled.build().readloop, n_read=args.n_read, n_write=args.n_write, rounds=args.rounds,
                seed=args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
