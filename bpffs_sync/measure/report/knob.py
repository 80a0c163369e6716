"""Knobs where they are read (issue 22, item 5): a per-cgroup u64 knob read from BPF in the
scheduling path, its write from user space, and who may write it.

hot_reads   bench/report/bpf/knob_read.bpf.c on tp_btf/sched_switch, for the cgroup of the task
            switched in: bpf_cgroup_read_xattr() of a cgroupfs user.* xattr against a map lookup
            keyed by cgroup id, each timed with bpf_ktime_get_ns() around the read alone, plus the
            clock pair with nothing between (its floor), in the same events in a rotating order.
            Why this clock and not BPF_PROG_RUN of a loop: the read is timed where a scheduler reads
            a knob, with the cache state of a context switch (a loop of N reads in one program keeps
            everything hot, and the kfunc's RCU argument comes from a task there, not from a test
            context); the price is the clock pair inside every sample, which the clock row shows.
            A ping-pong of two processes in the knob's cgroup makes the switches.
writes      the user-space write of the same 8 bytes both ways, the C loop (readloop xattr_set8 vs
            mapupdate: the u64 counter, so each write stores a new value of the same size), in
            interleaved rounds whose order is a seeded shuffle.
who_may_write  each cell a check run now: setxattr of user.* on a delegated cgroup (chown'ed to
            uid 65534, as cgroup delegation does) and a map update through its bpffs pin in two
            deployment modes, as root, as the delegated owner, as another unprivileged user, and as
            the delegated owner inside a cgroup namespace (unshare -C from inside the delegated
            cgroup).

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
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from bpffs_sync import libbpf
from bpffs_sync.errors import LibbpfError
from bpffs_sync.measure import ffi
from bpffs_sync.measure.report import compiled, measures, stats
from bpffs_sync.sandbox import remove_cgroup_tree

XATTR = "user.bpffs_sync_knob"  # knob_read.bpf.c reads this name
VALUE = 0x0123456789ABCDEF  # the knob both routes hold: the same 8 bytes
ROUTES = ("clock", "xattr", "map")  # knob_read.bpf.c's ROUTE_* order
SAMPLES = 4096  # KNOB_SAMPLES: per route per CPU
CPUS = 64  # KNOB_CPUS
_HEAD = struct.Struct("=3I3I3QQQ")  # n, errors, last, events, xattr_buf
SLOT_SIZE = _HEAD.size + 3 * SAMPLES * 4
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
_PINGPONG = ("import os, sys\nn = int(sys.argv[1])\nar, aw = os.pipe()\nbr, bw = os.pipe()\n"
             "if os.fork() == 0:\n    for _ in range(n):\n        os.read(ar, 1)\n        os.write(bw, b'x')\n"
             "    os._exit(0)\nfor _ in range(n):\n    os.write(aw, b'x')\n    os.read(br, 1)\nos.wait()\n")


# --- pure parts ------------------------------------------------------------------------------------


def parse_slot(raw: bytes) -> dict[str, Any]:
    """One CPU's struct knob_samples: per route its samples (ns), failed reads and last value."""
    head = _HEAD.unpack_from(raw)
    n, errors, last, events = head[0:3], head[3:6], head[6:9], head[9]
    out: dict[str, Any] = {"events": events}
    for i, route in enumerate(ROUTES):
        count = min(n[i], SAMPLES)
        ns = list(struct.unpack_from(f"={count}I", raw, _HEAD.size + i * SAMPLES * 4))
        out[route] = {"samples_ns": ns, "errors": errors[i], "last": last[i]}
    return out


def merge_slots(slots: list[dict[str, Any]], value: int) -> dict[str, Any]:
    """The CPUs' slots as one entry per route, each a measures.series with its errors; `equal`: both
    knob routes read `value` with no failed read (the equal-work check); a route with no sample is
    not_measured."""
    out: dict[str, Any] = {"events": sum(s["events"] for s in slots)}
    for route in ROUTES:
        used = [s[route] for s in slots if s[route]["samples_ns"]]
        samples = [x for s in used for x in s["samples_ns"]]
        if not samples:
            out[route] = stats.not_measured("no sampled switch into the knob's cgroup")
            continue
        out[route] = measures.series(used[-1]["last"], samples) | {"errors": sum(s["errors"] for s in used)}
    reads = [out[r] for r in ("xattr", "map")]
    out["equal"] = all(stats.is_measured(e) and e["errors"] == 0 and e["value"] == value for e in reads)
    return out


def kfunc_in_btf(name: str, btf: bytes) -> bool:
    """Whether a kernel's BTF (its raw bytes) names a function `name` (its string section holds it)."""
    return b"\0" + name.encode() + b"\0" in btf


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


def hot_reads(obj_path: str, cgroup: str, n: int) -> dict[str, Any]:
    """knob_read's three routes over the switches of a ping-pong in `cgroup` (about n per route, at most
    SAMPLES a CPU). The xattr and the map entry hold VALUE; the program is detached before return."""
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        if not kfunc_in_btf(KFUNC, f.read()):
            return stats.not_measured(f"this kernel has no {KFUNC}() kfunc (6.16+)")
    cgid = os.stat(cgroup).st_ino
    value = struct.pack("=Q", VALUE)
    os.setxattr(cgroup, XATTR, value)
    with libbpf.BpfObject(obj_path) as obj:
        try:
            obj.load()
        except LibbpfError as err:
            return stats.not_measured(f"knob_read.bpf.o did not load here: {err}"[:300])
        ffi.map_update(obj.map_fd("knobs"), _cg_key(cgid), value, "knobs")
        ffi.map_update(obj.map_fd("knob_config"), struct.pack("=I", 0), struct.pack("=Q", cgid), "knob_config")
        with obj.program("knob_switch").attach():
            subprocess.run([sys.executable, "-c", _PINGPONG, str(max(1, n))], check=True, timeout=300,
                           preexec_fn=lambda: _enter(cgroup))
        fd = obj.map_fd("samples")
        slots = [ffi.map_lookup(fd, struct.pack("=I", cpu), SLOT_SIZE, "samples")
                 for cpu in range(min(CPUS, os.cpu_count() or 1))]
    out = merge_slots([parse_slot(s) for s in slots if s is not None], VALUE)
    return out | {"hook": "tp_btf/sched_switch (the task switched in)", "value": VALUE,
                  "timing": "bpf_ktime_get_ns() before and after the read alone; route clock: the pair with nothing "
                           "between"}


# --- writes and who may write ----------------------------------------------------------------------


def writes(readloop: str, cgroup: str, map_pin: str, n: int, *, rounds: int, seed: int) -> dict[str, Any]:
    """setxattr of the knob's 8 bytes against a map update of the same 8 bytes (C p50s, interleaved)."""
    cgid = str(os.stat(cgroup).st_ino)
    loops = {"xattr_set": ["xattr_set8", cgroup, XATTR], "map_update": ["mapupdate", map_pin, "0", cgid]}
    parts: dict[str, list[list[int]]] = {k: [] for k in loops}
    orders = measures.round_orders(list(loops), rounds, seed)
    for order, count in zip(orders, measures.split(n, rounds), strict=True):
        for key in order:
            parts[key].append(measures.c_loop(readloop, loops[key], max(1, count))[1])
    out: dict[str, Any] = {k: measures.series(VALUE, [x for p in v for x in p]) for k, v in parts.items()}
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


def who_may_write(readloop: str, parent: str, map_fd: int, pin_dir: str) -> dict[str, Any]:
    """Rows: SUBJECTS; columns: setxattr user.* on the delegated cgroup, and a map update through
    the knob map's pin in each PIN_MODES deployment. Every cell is one write tried now."""
    with ExitStack() as stack:
        binary = _runner(readloop, stack)
        cg = stack.enter_context(_cgroup(parent, "knob-delegated"))
        delegate(cg, OWNER)
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
    return {"rows": rows, "columns": list(next(iter(rows.values()))),
            "modes": {k: v[2] for k, v in PIN_MODES.items()},
            "delegation": f"the cgroup, its cgroup.procs, cgroup.threads and cgroup.subtree_control chown'ed to "
                          f"uid {OWNER}"}


# --- the measure -----------------------------------------------------------------------------------


def run(readloop: str, cgroup_root: str, bpffs: str, *, n_read: int, n_write: int, rounds: int,
        seed: int) -> dict[str, Any]:
    """All of it on cgroups and pins of its own under cgroup_root and bpffs, removed after."""
    obj_path = compiled.bpf_object("knob_read")
    out: dict[str, Any] = {}
    with ExitStack() as stack:
        cg = stack.enter_context(_cgroup(cgroup_root, "knob-hot"))
        out["read"] = measures._attempt(lambda: hot_reads(obj_path, cg, n_read))
        pin_dir = os.path.join(bpffs, f"knob-{uuid.uuid4().hex[:8]}")
        os.mkdir(pin_dir)
        stack.callback(os.rmdir, pin_dir)
        obj = stack.enter_context(libbpf.BpfObject(obj_path))
        obj.load()
        map_fd = obj.map_fd("knobs")
        pin = os.path.join(pin_dir, "knobs_w")
        libbpf.obj_pin(map_fd, pin)
        stack.callback(os.unlink, pin)
        os.setxattr(cg, XATTR, struct.pack("=Q", VALUE))
        out["write"] = measures._attempt(lambda: writes(readloop, cg, pin, n_write, rounds=rounds, seed=seed))
        out["who"] = measures._attempt(lambda: who_may_write(readloop, cgroup_root, map_fd, pin_dir))
    out["a1_file"] = stats.not_measured("not built yet (issue 20): Approach 1's files have no write mode")
    return out
