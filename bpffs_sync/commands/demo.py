"""`bpffs-sync demo`: the README's walk-through against the running mirror.

Makes jobs/a (busy) and jobs/b (idle) under the cgroup root, waits for the daemon to mirror them,
burns CPU in jobs/a, prints `cat <bpffs>/cgroup/jobs/a/hist_oncpu` and `bpffs-sync verify`, then
removes what it made and waits for the mirror to follow.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from collections.abc import Callable

from bpffs_sync.backends.user_space import verify
from bpffs_sync.commands.common import prepare
from bpffs_sync.commands.status import daemon_status
from bpffs_sync.errors import EnvironmentProblem
from bpffs_sync.histogram import parse_stat
from bpffs_sync.paths import Layout
from bpffs_sync.programs import StatProgram
from bpffs_sync.sandbox import wait_until

DEMO = ("jobs", "a")
IDLE = ("jobs", "b")
_BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> float:
    try:
        return wait_until(pred, timeout, what)
    except TimeoutError as err:
        raise EnvironmentProblem("demo", what, 0, f"not there after {timeout:.0f} s") from err


def burn_in(cgroup_dir: str, seconds: float) -> float:
    """Run a CPU burner inside cgroup_dir; returns its user+sys CPU seconds."""
    def enter() -> None:
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w", encoding="ascii") as f:
            f.write(str(os.getpid()))

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", _BURN.format(s=seconds)], preexec_fn=enter, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _total_ns(stat_file: str) -> int:
    with open(stat_file, encoding="utf-8") as f:
        return parse_stat(f.read()).summary.get("total_ns", 0)


def demo(layout: Layout, specs: list[StatProgram], seconds: float) -> int:
    if not daemon_status(layout).get("running"):
        raise EnvironmentProblem("demo", layout.bpffs, 0, "no `bpffs-sync run` is mirroring this bpffs; start it first")
    made: list[str] = []
    try:
        for rel in (DEMO[:1], DEMO, IDLE):
            path = layout.cgroup_path(rel)
            if not os.path.isdir(path):
                os.mkdir(path)
                made.append(path)
        stat_file = os.path.join(layout.mirror_path(DEMO), "hist_oncpu")
        lag = wait_for(lambda: os.path.exists(stat_file), 10, stat_file)
        print(f"# mkdir {layout.cgroup_path(DEMO)}: mirrored after {lag * 1000:.1f} ms")
        before = _total_ns(stat_file)
        cpu = burn_in(layout.cgroup_path(DEMO), seconds)
        print(f"# burned {cpu:.3f} s of CPU in {'/'.join(DEMO)}\n$ cat {stat_file}")
        with open(stat_file, encoding="utf-8") as f:
            text = f.read()
        print(text, end="")
        total = (parse_stat(text).summary.get("total_ns", 0) - before) / 1e9
        print(f"# on-CPU time charged by hist_oncpu during the burn: {total:.3f} s; burner's user+sys: {cpu:.3f} s")
        print(f"$ bpffs-sync verify --bpffs {layout.bpffs}")
        report = verify(layout, specs)
        print(report.to_text())
        return 0 if report.in_sync else 1
    finally:
        for path in reversed(made):
            try:
                os.rmdir(path)
            except OSError as err:
                print(f"# could not remove {path}: {err}", file=sys.stderr)
        if made:
            gone = layout.mirror_path(DEMO[:1]) if made[0] == layout.cgroup_path(DEMO[:1]) else ""
            if gone:
                wait_for(lambda: not os.path.exists(gone), 10, f"removal of {gone}")
                print(f"# removed the demo cgroups; the mirror dropped {gone}")


def main(args: argparse.Namespace) -> int:
    layout, specs = prepare(args, mount=False)
    return demo(layout, specs, seconds=args.seconds)
