"""The usability table: every cell is a check run now, on the bed, and says what it saw.

Columns: cat/grep (a shell user: `cat | grep` of a file; for a pinned BPF_PROG_RUN program or a pinned
map, the tool a shell user has instead: a ten-line libbpf helper or `bpftool`, never `cat`),
unprivileged (the C loop as uid 65534, with the pin mode a deployment would give it: DEPLOYED),
cgroup v1 (the same mechanism pointed at the bed's v1 cgroup; for a kernel series, what its design
says beside what our series does: v1_cell), after rmdir (what a reader holding the name sees once
the cgroup is gone; the mirror's file with its daemon running), daemon crash (the user-space
mirror's daemon killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from bpffs_sync.errors import SyncError
from bpffs_sync.loader import cg_key
from bpffs_sync.measure import ffi
from bpffs_sync.measure.report.bed import XATTR, Bed, pin_iterator
from bpffs_sync.measure.report.measures import mirror_daemon, readable_file
from bpffs_sync.measure.report.mechanisms import Mechanism, stat_args
from bpffs_sync.sandbox import wait_until

COLUMNS = ("cat / grep", "unprivileged (uid 65534)", "cgroup v1", "after rmdir", "daemon crash")
NOBODY = 65534
READER_GID = 64223  # the readers' group of a deployment's pins (a number: no /etc/group entry is needed)
# The mode a real deployment gives what uid 65534 reads, per row (the report's own pins are bpffs's 0600):
# the mirror's files as the daemon makes them (paths.FILE_MODE, owner root; `run --file-mode 0440
# --file-group G` narrows it to a group); a program or map pin for a readers' group, 0660, because
# BPF_OBJ_GET of a program pin is O_RDWR only (and the C loop opens a map pin read-write too).
DEPLOYED: dict[str, tuple[int, int] | None] = {  # row -> (mode, gid) applied for the check; None: as made
    "mirror_iter": None, "prog_run": (0o660, READER_GID), "map_lookup": (0o660, READER_GID),
    "iter_per_read": (0o660, READER_GID), "cpu_stat": None, "netlink": None,
}
V1_DESIGN = {  # what each kernel series' design says of cgroup v1
    "a1": "one mirror tree per v1 hierarchy, <bpffs>/cgroup-v1/<hierarchy>/<path> (DESIGN.md, docs/architecture.md)",
    "a2": "bpf.stat files in v1 cgroup directories too (kernel-approach2/README.md)",
}


def _sh(cmd: str) -> tuple[int, str]:
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=False, timeout=30)
    out = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return proc.returncode, (out[-1] if out else "")[:120]


def cat_grep(path: str | None, key: str) -> str:
    if path is None:
        return "no: not a file (a netlink request): no path to cat"
    rc, out = _sh(f"cat '{path}' | grep -c '{key}'")
    if rc == 0:
        return f"yes: `cat | grep -c {key}` counted {out} line(s)"
    rc, out = _sh(f"cat '{path}' >/dev/null")
    return f"no: `cat` of the pin fails ({out or f'exit {rc}'})" if rc else f"no: cat works but no `{key}` line"


def prog_from_shell(readloop: str, pin: str, cgroup_id: int) -> str:
    """BPF_PROG_RUN of a pinned SYSCALL program from a shell: a ten-line libbpf helper (the C loop's
    progrun mode: bpf_obj_get + bpf_prog_test_run_opts) and `bpftool prog run`."""
    rc, out = _sh(f"'{readloop}' progrun 1 '{pin}' 0 {cgroup_id} | grep '^value '")
    helper = (f"yes: a ten-line libbpf helper (bpf_obj_get + bpf_prog_test_run_opts) | grep printed `{out}`"
              if rc == 0 else f"no: a ten-line libbpf helper failed ({out or f'exit {rc}'})")
    ctx = tempfile.NamedTemporaryFile(prefix="bpffs-sync-ctx-", delete=False)  # noqa: SIM115 (closed below)
    try:
        ctx.write(stat_args(cgroup_id))
        ctx.close()
        rc, out = _sh(f"bpftool prog run pinned '{pin}' data_in /dev/null ctx_in '{ctx.name}'")
    finally:
        os.unlink(ctx.name)
    _, version = _sh("bpftool version | head -1")
    if rc == 0:
        tool = f"`bpftool prog run` runs it ({version})"
    else:
        tool = f"`bpftool prog run` fails here ({version}: {out or f'exit {rc}'})"
        if "Invalid argument" in out:
            tool += ("; bpftool passes output buffers and repeat=1, which the test run of a BPF_PROG_TYPE_SYSCALL "
                     "program refuses (EINVAL; seen with strace on bpftool v7.1)")
    return f"{helper}; {tool}"


def map_from_shell(pin: str, cgroup_id: int) -> str:
    """A pinned map's entry from a shell: `bpftool map lookup` with the cgroup's key."""
    key = " ".join(f"{b:02x}" for b in cg_key(0, cgroup_id))
    rc, out = _sh(f"bpftool -j map lookup pinned '{pin}' key hex {key} | grep -c '\"value\"'")
    return (f"yes: `bpftool map lookup pinned ... key hex <cg_key>` printed the entry (grep -c: {out})" if rc == 0
            else f"no: `bpftool map lookup` failed ({out or f'exit {rc}'})")


@contextlib.contextmanager
def deployed_mode(path: str, mode_gid: tuple[int, int] | None) -> Iterator[str]:
    """The path with a deployment's mode and group for the check, its own restored after; yields the
    words for the cell."""
    if mode_gid is None:
        st = os.stat(path)
        yield f"as made: {stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid}"
        return
    st = os.stat(path)
    mode, gid = mode_gid
    os.chown(path, 0, gid)
    os.chmod(path, mode)
    try:
        yield f"pin {mode:04o} root:{gid}, uid 65534 in group {gid}"
    finally:
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))


def unprivileged(readloop: str, cloop: list[str] | None, groups: tuple[int, ...] = ()) -> str:
    if cloop is None:
        return "not measured: mechanism unavailable here"
    # The loop may be built under a home uid 65534 cannot enter (an install compiles it into ~/.cache, and
    # /root is 0700): it runs a copy in a directory of its own that it can.
    with tempfile.TemporaryDirectory(prefix="bpffs-sync-readloop-") as tmp:
        os.chmod(tmp, 0o755)
        binary = shutil.copy2(readloop, tmp)
        try:
            proc = subprocess.run([binary, cloop[0], "1", *cloop[1:]], capture_output=True, text=True, check=False,
                                  user=NOBODY, group=NOBODY, extra_groups=list(groups), timeout=30)
        except OSError as err:
            return f"not measured: cannot run the C loop as uid 65534 from {tmp}: {err.strerror}"
    if proc.returncode == 0:
        return "yes: read as uid 65534"
    return f"no: {proc.stderr.strip().removeprefix('readloop: ')[:100]}"


def _try(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except (OSError, SyncError, RuntimeError) as err:
        return f"no: {err}"[:140]


def _hierarchy_id(controller: str) -> int:
    with open("/proc/cgroups", encoding="ascii") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == controller:
                return int(fields[1])
    raise RuntimeError(f"{controller} not in /proc/cgroups")


def v1_cells(bed: Bed) -> dict[str, str]:
    cpu = bed.v1.get("cpu")
    if cpu is None:
        return dict.fromkeys(("mirror_iter", "prog_run", "map_lookup", "iter_per_read", "cpu_stat", "netlink",
                              "xattr"), "not measured: no cgroup-v1 cpu hierarchy on this host")
    hid, cgid = _hierarchy_id("cpu"), os.stat(cpu).st_ino
    key = cg_key(hid, cgid)

    def mirror() -> str:
        pin = os.path.join(bed.layout.bpffs, "report", "v1_pin")
        pin_iterator(bed.loaded.reader, cpu, pin)
        try:
            with open(pin, encoding="utf-8") as f:
                return "yes: a pin on the v1 cpu cgroup reads " + f.read().splitlines()[1]
        finally:
            os.unlink(pin)

    def lookup() -> str:
        raw = ffi.map_lookup(bed.map_fd, key, 232, "oncpu_stats")
        return f"yes: key (hierarchy {hid}, id {cgid}) found" if raw else "no: no entry for the v1 cgroup"

    def prog_run() -> str:
        _, out = ffi.prog_test_run_ctx(bed.prog_fd, key + bytes(8 + 232), "stat_by_id")
        return f"yes: found={int.from_bytes(out[16:20], 'little')} for (hierarchy {hid}, id {cgid})"

    def iter_once() -> str:
        fd = os.open(cpu, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with ffi.attach_cgroup_iter(bed.loaded.reader, fd, cpu) as link:
                return "yes: reads " + ffi.iter_read(link).decode().splitlines()[1]
        finally:
            os.close(fd)

    def cpu_stat() -> str:
        with open(os.path.join(cpu, "cpu.stat"), encoding="ascii") as f:
            has = "usage_usec" in f.read()
        return "yes: v1 cpu.stat has usage_usec" if has else "no: v1 cpu.stat has no usage_usec (cpuacct.usage does)"

    def netlink() -> str:
        from bpffs_sync.measure.report.mechanisms import netlink_reader

        try:
            netlink_reader(bed.target)()
        except Exception as err:  # pyroute2's NetlinkError: the v2 answer is the point
            return f"v1 only: the v2 cgroup gives {err}"[:140]
        return "yes: v1 and v2"

    def xattr() -> str:
        os.setxattr(cpu, XATTR, b"1")
        return "yes: setxattr on a v1 cgroup works"

    return {"mirror_iter": _try(mirror), "prog_run": _try(prog_run), "map_lookup": _try(lookup),
            "iter_per_read": _try(iter_once), "cpu_stat": _try(cpu_stat), "netlink": _try(netlink),
            "xattr": _try(xattr)}


def mirror_after_rmdir(bed: Bed) -> str:
    """The mirror's file of a cgroup removed while its daemon runs (the caller runs it): a reader
    holding the file open, and a reader opening it by name after rmdir (once the daemon has reacted,
    or 2 s)."""
    cg = os.path.join(bed.layout.cgroup_root, "gone-mirrored")
    os.mkdir(cg)
    path = bed.layout.mirror_path(("gone-mirrored", "hist_oncpu"))
    try:
        wait_until(readable_file(path), 10, "the daemon mirrors a new cgroup")
        held = os.open(path, os.O_RDONLY)
    finally:
        os.rmdir(cg)
    try:
        t0 = time.monotonic()
        try:
            wait_until(lambda: not os.path.exists(path), 2, "the daemon unpins a removed cgroup")
            by_name = f"opening it by name gives ENOENT {1e3 * (time.monotonic() - t0):.0f} ms after rmdir " \
                      "(the daemon unpinned it)"
        except TimeoutError:
            by_name = "stale: the file is still there 2 s after rmdir"
        data = os.read(held, 65536)
    finally:
        os.close(held)
    held_cell = (f"a reader holding it open reads {len(data)} bytes, the removed cgroup's last figures" if data else
                 "a reader holding it open reads 0 bytes (no record for a removed cgroup)")
    return f"daemon running: {by_name}; {held_cell}"


def after_rmdir(bed: Bed, mirror: str) -> dict[str, str]:
    """Each reader is set up on a cgroup, the cgroup is removed, then the reader reads; the mirror's
    cell is made with its daemon running (mirror_after_rmdir, in daemon_cells)."""
    cg = os.path.join(bed.layout.cgroup_root, "gone")
    os.mkdir(cg)
    fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    cgid = os.stat(cg).st_ino
    os.rmdir(cg)
    try:
        def iter_once() -> str:
            with ffi.attach_cgroup_iter(bed.loaded.reader, fd, cg) as link:
                return f"reads {len(ffi.iter_read(link))} bytes from a held fd"

        def cpu_stat() -> str:
            with open(os.path.join(cg, "cpu.stat"), encoding="ascii") as f:
                f.read()
            return "stale: still readable"

        def prog_run() -> str:
            _, out = ffi.prog_test_run_ctx(bed.prog_fd, cg_key(0, cgid) + bytes(8 + 232), "stat_by_id")
            return f"answers found={int.from_bytes(out[16:20], 'little')}: an id cannot tell 'gone' from 'idle'"

        def lookup() -> str:
            raw = ffi.map_lookup(bed.map_fd, cg_key(0, cgid), 232, "oncpu_stats")
            return "entry still there (stale until deleted)" if raw else "no entry: cannot tell 'gone' from 'idle'"

        return {"mirror_iter": mirror, "iter_per_read": _try(iter_once),
                "cpu_stat": _try(cpu_stat), "prog_run": _try(prog_run), "map_lookup": _try(lookup),
                "netlink": "not measured: the row's cgroup-v1 fd is held open by the reader",
                "xattr": _try(lambda: f"stale: still reads {os.getxattr(cg, XATTR)!r}")}
    finally:
        os.close(fd)


def v1_cell(key: str, check: str) -> str:
    """A kernel series' cgroup-v1 cell: the check's answer beside its design's; a 'no' where the design
    says yes is a gap of our series, not of the approach."""
    design = V1_DESIGN.get(key)
    if design is None:
        return check
    if check.startswith("no:"):
        return f"not built in our series: {check} (per design: {design})"
    return f"{check} (per design: {design})"


def daemon_crash(bed: Bed, proc: subprocess.Popen[bytes]) -> str:
    """SIGKILL the mirror daemon; does an existing file still read, is a new cgroup mirrored?"""
    before = readable_file(bed.mirror_file)()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    after = readable_file(bed.mirror_file)()
    late = os.path.join(bed.layout.cgroup_root, "after-crash")
    os.mkdir(late)
    time.sleep(1.0)
    mirrored = readable_file(bed.layout.mirror_path(("after-crash", "hist_oncpu")))()
    os.rmdir(late)
    existing = "existing files still read" if before and after else "existing files lost"
    new = "a cgroup made after it is mirrored" if mirrored else "a cgroup made after it: no file 1 s later"
    return f"partly: {existing}; {new} (until restart)"


def daemon_cells(bed: Bed) -> tuple[str, str]:
    """One daemon start for both daemon cells: the mirror's after-rmdir cell while it runs, then its
    SIGKILL (daemon_crash)."""
    try:
        with mirror_daemon(bed.layout) as proc:
            gone = _try(lambda: mirror_after_rmdir(bed))
            return gone, _try(lambda: daemon_crash(bed, proc))
    except (OSError, SyncError, RuntimeError) as err:
        return (f"not measured: the mirror daemon: {err}"[:140],) * 2


def _unprivileged_row(bed: Bed, key: str, path: str | None, cloop: list[str] | None) -> str:
    mode = DEPLOYED.get(key)
    if path is None or cloop is None or not os.path.exists(path):
        return unprivileged(bed.tools.readloop, cloop)
    with deployed_mode(path, mode) as how:
        cell = unprivileged(bed.tools.readloop, cloop, (mode[1],) if mode else ())
    return f"{cell} ({how})"


def table(bed: Bed, mechs: list[Mechanism]) -> dict[str, dict[str, str]]:
    by_key = {m.key: m for m in mechs}
    keys = {"mirror_iter": bed.mirror_file, "prog_run": bed.progrun_pin, "map_lookup": bed.map_pin,
            "iter_per_read": bed.reader_pin, "cpu_stat": os.path.join(bed.target, "cpu.stat"), "netlink": None}
    grep_key = {"cpu_stat": "usage_usec"}
    shell = {"prog_run": lambda: prog_from_shell(bed.tools.readloop, bed.progrun_pin, bed.target_id),
             "map_lookup": lambda: map_from_shell(bed.map_pin, bed.target_id)}
    v1 = v1_cells(bed)
    gone_mirror, crash = daemon_cells(bed)
    gone = after_rmdir(bed, gone_mirror)
    rows: dict[str, dict[str, str]] = {}
    for key, path in keys.items():
        m = by_key.get(key)
        rows[key] = {
            "cat / grep": _try(shell[key]) if key in shell else cat_grep(path, grep_key.get(key, "total_ns")),
            "unprivileged (uid 65534)": _unprivileged_row(bed, key, path, m.cloop if m else None),
            "cgroup v1": v1[key],
            "after rmdir": gone[key],
            "daemon crash": crash if key == "mirror_iter" else "n/a: no daemon (its reads ran with none running)",
        }
    xattr_path = bed.target
    rows["xattr"] = {
        "cat / grep": "no: `getfattr` or getxattr(2), not cat",
        "unprivileged (uid 65534)": unprivileged(bed.tools.readloop, ["xattr_get", xattr_path, XATTR])
        + " (the cgroup directory as made: 0755 root)",
        "cgroup v1": v1["xattr"], "after rmdir": gone["xattr"],
        "daemon crash": "n/a: no daemon (its reads ran with none running)",
    }
    return rows


def as_json(rows: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {"columns": list(COLUMNS), "rows": rows}
