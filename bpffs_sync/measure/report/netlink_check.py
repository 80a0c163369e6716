"""Why the netlink row read "value 0" with a sleeping task in every test cgroup: a check, run in each
report (host and guest), not a guess.

taskstats' CGROUPSTATS_CMD_GET (kernel/cgroup/cgroup-v1.c, cgroupstats_build()) counts each task of
the cgroup by a `switch` on its exact __state. `sleep` waits in nanosleep, which sleeps
TASK_INTERRUPTIBLE | TASK_FREEZABLE since the freezer rewrite (6.1): no case matches, the task counts
in no field, and the sum is 0. A task asleep in a pipe read (plain TASK_INTERRUPTIBLE) counts as
nr_sleeping. check() puts one of each, in turn, alone in a fresh cgroup-v1 cgroup and reads the
counts and where the task sleeps (/proc/PID/wchan); explain() (pure) turns that into the report's
sentence. The test bed's sleeper is now the pipe reader (bed._sleeper), so the row reads 1.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from typing import Any

TASKS = {  # what sleeps, and how: (argv, stdin is a pipe we hold open)
    "nanosleep": (["sleep", "100000"], False),
    "pipe_read": (["cat"], True),
}


def enter_cgroup(cgroup: str) -> None:
    with open(os.path.join(cgroup, "cgroup.procs"), "w", encoding="ascii") as f:
        f.write(str(os.getpid()))


def _wchan(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/wchan", encoding="ascii") as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


def _asleep(pid: int, timeout: float = 10.0) -> bool:
    """Is the task in state S (it reached its wait)? Polled up to timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "S":
                return True
        time.sleep(0.01)
    return False


def one(parent: str, name: str) -> dict[str, Any]:
    """The netlink counts of a fresh v1 cgroup under parent holding only TASKS[name], asleep."""
    from bpffs_sync.measure.report.mechanisms import netlink_states

    argv, piped = TASKS[name]
    cg = os.path.join(parent, f"netlink-check-{name}")
    os.mkdir(cg)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, preexec_fn=lambda: enter_cgroup(cg))  # noqa: PLW1509
        try:
            asleep = _asleep(proc.pid)
            states = netlink_states(cg)
            try:
                counts = states()
            finally:
                states.close()
            return {"task": " ".join(argv), "asleep": asleep, "wchan": _wchan(proc.pid), "counts": counts}
        finally:
            proc.kill()
            proc.wait(10)
            if proc.stdin is not None:
                proc.stdin.close()
    finally:
        for _ in range(100):  # the killed task leaves the cgroup a moment after wait()
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.02)


def explain(nanosleep: dict[str, int], pipe_read: dict[str, int]) -> str:
    """The sentence for the report, from the two tasks' counts (NETLINK_STATES -> count)."""
    ns, pr = sum(nanosleep.values()), sum(pipe_read.values())
    if ns == 0 and pipe_read.get("nr_sleeping", 0) == 1 and pr == 1:
        return ("explained: a task asleep in nanosleep (`sleep`) counts in no field (its state is "
                "TASK_INTERRUPTIBLE | TASK_FREEZABLE, which cgroupstats_build()'s switch does not match), a task "
                "asleep in a pipe read counts as nr_sleeping = 1; the bed's sleeper is a pipe reader, so the row "
                "reads 1")
    if ns == 1 and pr == 1:
        return "both sleepers count (this kernel counts a freezable sleep): the old 0 is not explained by it"
    return (f"unexpected counts: nanosleep {ns} ({nanosleep}), pipe read {pr} ({pipe_read}): the zero is not "
            "explained by the sleep state")


def check(parent: str) -> dict[str, Any]:
    """Both tasks, one after the other, under the v1 cgroup `parent`; the counts and explain()'s sentence."""
    got = {name: one(parent, name) for name in TASKS}
    return got | {"finding": explain(got["nanosleep"]["counts"], got["pipe_read"]["counts"])}
