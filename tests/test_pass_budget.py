"""Bounded, interruptible passes (issue 17 item 5): a pass applies a bounded slice of each
top-level subtree's ops and hands the rest back (deferred, re-read next pass), SIGHUP's full
round re-walks the mirror instead of trusting the reconciler's cache, and SIGTERM ends a long
pass between two operations (exit 0, the mirror consistent). Asserted on counts and log lines,
not on time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from helpers import Mirror, wait_for

from bpffs_sync.interrupt import Preempted
from bpffs_sync.mirror.apply import Budget
from bpffs_sync.mirror.daemon import HintQueue, _by_subtree, _subtree
from bpffs_sync.mirror.mirrors import TreeHint
from bpffs_sync.mirror.reconciler import Reconciler


def _lines(mirror: Mirror, event: str) -> list[dict[str, Any]]:
    out = []
    for line in mirror.log().splitlines():
        if f'"{event}"' in line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return [d for d in out if d.get("event") == event]


def test_budgeted_pass_defers_the_rest_of_a_subtree(mirror: Mirror, rec: Reconciler) -> None:
    """50 cgroups to mirror below t and one below u, 10 ops of each subtree a pass: t's pass is
    cut and hands t back, u is done in the same pass; repeated passes converge."""
    os.mkdir(mirror.cg("t"))
    os.mkdir(mirror.cg("u"))
    rec.reconcile()
    for i in range(50):
        os.mkdir(mirror.cg(f"t/c{i}"))
    os.mkdir(mirror.cg("u/x"))
    budget = Budget(ops=10, seconds=3600.0)
    res = rec.reconcile(("t",), ("u", "x"), budget=budget)
    assert len(res.plan.ops) == 102  # mkdir + pin of each
    assert sum(res.applied.done.values()) == 12  # 10 of t's, both of u/x's
    assert res.applied.cut == {"t"} and res.applied.left == 90
    assert res.deferred == [("t",)]
    assert os.path.exists(mirror.stat_path("u/x"))
    passes = 1
    while res.deferred:
        res = rec.reconcile(*res.deferred, budget=budget)
        passes += 1
        assert passes < 20
    assert passes == 10  # 100 ops of t, 10 a pass
    assert mirror.in_sync()


def test_sighup_full_round_is_deep_and_budgeted(mirror: Mirror) -> None:
    """Pins removed behind the daemon's back are in no cache: only a deep walk sees them. SIGHUP's
    full round must re-walk the mirror, and it repairs t's 700 pins over several bounded passes
    (the first one cut, t deferred) while u's pin is repaired in the first."""
    n = 700
    os.mkdir(mirror.cg("t"))
    os.mkdir(mirror.cg("u"))
    for i in range(n):
        os.mkdir(mirror.cg(f"t/c{i}"))
    mirror.start("--no-watch", resync_interval=600)
    assert mirror.proc is not None
    for i in range(n):
        os.unlink(mirror.stat_path(f"t/c{i}"))
    os.unlink(mirror.stat_path("u"))
    mirror.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: all(os.path.exists(mirror.stat_path(f"t/c{i}")) for i in range(n))
             or mirror.proc is None or mirror.proc.poll() is not None, 60, "t's pins repaired")
    assert mirror.proc.poll() is None, mirror.log()
    full = [d for d in _lines(mirror, "reconcile_pass") if d.get("scope") == "." and d.get("ops") == n + 1]
    assert len(full) == 1, _lines(mirror, "reconcile_pass")
    assert full[0]["cut"] == ["t"] and full[0]["left"] > 0 and full[0]["deferred"] == 1
    assert sum(full[0]["done"].values()) + full[0]["left"] == n + 1
    assert os.path.exists(mirror.stat_path("u"))
    passes = _lines(mirror, "reconcile_pass")
    later = passes[passes.index(full[0]) + 1:]  # t's rest: t, or the cgroups below it its walk left
    assert sum(d["done"].get("pin", 0) for d in later if d["scope"].split("/")[0] == "t") == full[0]["left"]
    assert mirror.in_sync()


def test_sigterm_ends_a_long_pass_between_operations(mirror: Mirror) -> None:
    """SIGTERM while the first full pass builds 6 000 cgroups' mirror: the pass ends between two
    ops (pass_interrupted), the daemon exits 0 with part of the mirror missing, and a later
    `run --once` completes it (nothing half-made is left in its way)."""
    for g in range(60):
        os.mkdir(mirror.cg(f"g{g}"))
        for i in range(100):
            os.mkdir(mirror.cg(f"g{g}/c{i}"))
    mirror.log_path = os.path.join(mirror.run_dir, f"daemon-{uuid.uuid4().hex[:6]}.log")
    with open(mirror.log_path, "w", encoding="utf-8") as log:
        mirror.proc = proc = subprocess.Popen(
            [sys.executable, "-m", "bpffs_sync", "--log-format", "json", "run", *mirror.args(), "--user-space",
             "--resync-interval", "3600"],
            stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **mirror.env})
    first = os.path.join(mirror.bpffs, "cgroup", "g0")  # the pass's first op
    deadline = time.monotonic() + 60
    while not os.path.exists(first) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert os.path.exists(first), mirror.log()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, mirror.log()
    stopped = _lines(mirror, "pass_interrupted")
    assert len(stopped) == 1 and stopped[0]["tree"], mirror.log()
    assert _lines(mirror, "stopping")[-1]["interrupted"] == 1
    assert not os.path.exists(mirror.stat_path("g59/c99"))  # the pass really was cut short
    assert not mirror.in_sync()
    res = mirror.cli("run", "--once")
    assert res.returncode == 0, res.stderr
    assert mirror.in_sync()


def test_hinted_scopes_pass_per_subtree_fewest_first() -> None:
    """Budgeted hints run one pass per top-level subtree, the subtree with fewest hints first; a
    full pass stays one."""
    busy = [("d", f"x{i}") for i in range(5)]
    assert _by_subtree([*busy, ("e", "y"), ("f",), ("f", "z")]) == [[("e", "y")], [("f",), ("f", "z")], busy]
    assert _by_subtree([("d",), ()]) == [[("d",), ()]]


def test_hint_queue_tells_when_another_subtree_waits() -> None:
    """What preemption asks of the queue: is a hint of another subtree (or a full resync) pending."""
    q: HintQueue[TreeHint] = HintQueue(_subtree)
    me = ("cgroup", "d")
    q.put(("cgroup", ("d", "x")))
    assert not q.pending_other(me)
    q.put(("cgroup", ("e",)))
    assert q.pending_other(me)
    q.take(0)
    assert not q.pending_other(me)
    q.put(None)
    assert q.pending_other(me)


def test_preempted_pass_is_taken_up_again(mirror: Mirror, rec: Reconciler) -> None:
    """A pass preempted half-way leaves its scope to be re-read (not trusted from the cache): the
    next pass over it completes the mirror."""
    os.mkdir(mirror.cg("t"))
    rec.reconcile()
    for i in range(300):
        os.mkdir(mirror.cg(f"t/c{i}"))
    calls = [0]

    def preempt() -> bool:
        calls[0] += 1
        return calls[0] > 50  # some way into the pass

    with pytest.raises(Preempted):
        rec.reconcile(("t",), budget=Budget(ops=10_000, seconds=3600.0, walk_seconds=3600.0), preempt=preempt)
    assert sum(os.path.exists(mirror.stat_path(f"t/c{i}")) for i in range(300)) < 300  # cut short
    res = rec.reconcile(("t",))
    assert not res.deferred and not res.applied.errors
    assert mirror.in_sync()
