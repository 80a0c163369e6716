"""The test bed every mechanism reads: one busy cgroup, its stat reachable every way at once.

- a private bpffs and a private v2 cgroup subtree (bpffs_sync.sandbox), target cgroup `busy`;
- hist_oncpu loaded as the user-space mirror loads it (loader.LoadedStat): stats map and
  collector pinned, the mirror's pinned iterator at <bpffs>/cgroup/busy/hist_oncpu (one
  Reconciler pass);
- the reader program pinned too (for a cgroup iterator made per read, without a pinned link);
- bench/report/bpf/stat_by_id.bpf.o loaded against the *same* pinned stats map: the SYSCALL
  programs pinned for BPF_PROG_RUN (stat_by_id: the raw struct; stat_text: the full text), a
  pinned knob map, and total_only (an iterator reader printing total_ns alone), pinned as a
  program and as a SELF_ONLY iterator of `busy` (the "raw value" file);
- when cgroup v1 cpu / cpuacct / memory hierarchies are mounted, a private cgroup in each, for the
  native v1 files and for taskstats' CGROUPSTATS (which only accepts cgroup-v1 directories);
- a sleeping task in all of them (asleep in a pipe read: one taskstats counts), and a short CPU
  burn, so every stat has something to show.

Everything is undone on exit, also on error (an ExitStack, unwound in reverse order of set-up).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from bpffs_sync import libbpf
from bpffs_sync.libbpf import BpfProgram
from bpffs_sync.loader import LoadedStat
from bpffs_sync.measure import ffi
from bpffs_sync.measure.report.compiled import Tools
from bpffs_sync.mirror.reconciler import Reconciler
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup
from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, remove_cgroup_tree, umount_bpffs

STAT = "hist_oncpu"
V1_ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("cpu", "cpuacct", "memory")
XATTR = "user.bpffs_sync_knob"
_BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


@dataclass(slots=True)
class Bed:
    layout: Layout
    tools: Tools
    target: str  # the v2 cgroup every mechanism reads
    target_id: int
    mirror_file: str  # the user-space mirror's file for target
    map_pin: str  # hist_oncpu's stats map (struct cg_key -> struct hist_value)
    reader_pin: str  # hist_oncpu's reader program (SEC iter/cgroup)
    progrun_pin: str  # stat_by_id (SEC syscall)
    text_pin: str  # stat_text (SEC syscall): the full text into the context
    total_file: str  # total_only's pinned iterator of target: "<total_ns>\n"
    total_reader_pin: str  # total_only (SEC iter/cgroup), for an iterator made per read
    knob_pin: str  # knobs map (struct cg_key -> u64)
    loaded: LoadedStat
    map_fd: int
    knob_fd: int
    prog_fd: int
    text_fd: int
    total_reader: BpfProgram
    v1: dict[str, str] = field(default_factory=dict)  # controller -> private v1 cgroup


def v1_mounted(controller: str) -> bool:
    """A cgroup-v1 hierarchy of `controller` at /sys/fs/cgroup/<controller> (not cgroup2)."""
    path = os.path.join(V1_ROOT, controller)
    return os.path.isfile(os.path.join(path, "tasks")) and not os.path.islink(path)


def _enter(cgroups: list[str], pid: int) -> None:
    for cg in cgroups:
        with open(os.path.join(cg, "cgroup.procs"), "w", encoding="ascii") as f:
            f.write(str(pid))


def burn(cgroups: list[str], seconds: float) -> None:
    """A CPU burner run inside every cgroup of `cgroups` (one per hierarchy)."""
    # preexec_fn: the child must be in the cgroups before it runs; no thread of ours holds a lock then.
    subprocess.run([sys.executable, "-c", _BURN.format(s=seconds)], check=True,
                   preexec_fn=lambda: _enter(cgroups, os.getpid()))


def _sleeper(cgroups: list[str]) -> subprocess.Popen[bytes]:
    """A task asleep in a pipe read (TASK_INTERRUPTIBLE): taskstats' CGROUPSTATS counts it as
    nr_sleeping. `sleep` would not do: nanosleep sleeps TASK_INTERRUPTIBLE | TASK_FREEZABLE, which
    cgroupstats_build() counts in no field (the netlink row read 0; netlink_check.py shows it)."""
    return subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            preexec_fn=lambda: _enter(cgroups, os.getpid()))  # noqa: PLW1509


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(10)
    if proc.stdin is not None:
        proc.stdin.close()


def pin_iterator(reader: BpfProgram, cgroup_dir: str, pin: str) -> None:
    """Pin a SELF_ONLY iterator of a reader program for cgroup_dir at pin (what the mirror pins)."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with ffi.attach_cgroup_iter(reader, fd, cgroup_dir) as link:
            link.pin(pin)
    finally:
        os.close(fd)


def _unpin_mirror(layout: Layout) -> None:
    """Drop the mirror's pins before the cgroups go (a pin keeps a removed cgroup alive)."""
    subprocess.run(["rm", "-rf", layout.mirror_root], check=False)


@contextmanager
def open_bed(tools: Tools, burn_seconds: float = 0.3) -> Iterator[Bed]:
    with ExitStack() as stack:
        mnt = mount_bpffs()
        stack.callback(umount_bpffs, mnt)
        root = make_cgroup_root("bpffs-sync-report")
        stack.callback(remove_cgroup_tree, root)
        target = os.path.join(root, "busy")
        os.mkdir(target)
        v1: dict[str, str] = {}
        for ctrl in V1_CONTROLLERS:
            if v1_mounted(ctrl):
                path = os.path.join(V1_ROOT, ctrl, f"bpffs-sync-report-{uuid.uuid4().hex[:8]}")
                os.mkdir(path)
                stack.callback(remove_cgroup_tree, path)
                v1[ctrl] = path
        layout = Layout(mnt, root)
        loaded = LoadedStat(layout, lookup(STAT))
        stack.callback(loaded.close)
        stack.callback(_unpin_mirror, layout)
        Reconciler(layout, {STAT: loaded}).reconcile(())

        private = os.path.join(mnt, "report")
        os.mkdir(private)
        reader_pin = os.path.join(private, "hist_oncpu_reader")
        libbpf.obj_pin(loaded.reader.fd(), reader_pin)
        obj = libbpf.BpfObject(tools.bpf_object)
        stack.callback(obj.close)
        assert loaded.map_fd is not None  # hist_oncpu keeps a map
        map_pin = layout.private_path(STAT, loaded.spec.map_name())
        knob_pin = os.path.join(private, "knobs")
        obj.set_map_pin_path("oncpu_stats", map_pin)
        obj.set_map_pin_path("knobs", knob_pin)
        obj.load()
        progrun_pin = os.path.join(private, "stat_by_id")
        prog_fd = obj.program("stat_by_id").fd()
        libbpf.obj_pin(prog_fd, progrun_pin)
        text_pin = os.path.join(private, "stat_text")
        text_fd = obj.program("stat_text").fd()
        libbpf.obj_pin(text_fd, text_pin)
        total_reader = obj.program("total_only")
        total_reader_pin = os.path.join(private, "total_only_reader")
        libbpf.obj_pin(total_reader.fd(), total_reader_pin)
        total_file = os.path.join(private, "busy_total_ns")
        pin_iterator(total_reader, target, total_file)
        stack.callback(os.unlink, total_file)  # before the cgroup goes: a pin keeps it alive

        members = [target, *v1.values()]
        stack.callback(_stop, _sleeper(members))
        os.setxattr(target, XATTR, b"0")
        burn(members, burn_seconds)
        yield Bed(layout=layout, tools=tools, target=target, target_id=os.stat(target).st_ino,
                  mirror_file=layout.mirror_path(("busy", STAT)), map_pin=map_pin, reader_pin=reader_pin,
                  progrun_pin=progrun_pin, text_pin=text_pin, total_file=total_file,
                  total_reader_pin=total_reader_pin, knob_pin=knob_pin, loaded=loaded, map_fd=loaded.map_fd,
                  knob_fd=obj.map_fd("knobs"), prog_fd=prog_fd, text_fd=text_fd, total_reader=total_reader, v1=v1)
