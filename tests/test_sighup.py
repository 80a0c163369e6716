"""SIGHUP is handled by the daemon: a full resync at once, logged; the default action (death
mid-pass, possibly with a directory left at mode 000 by the dot trick) never happens."""

from __future__ import annotations

import json
import os
import signal

from helpers import Mirror, wait_for


def test_sighup_runs_a_full_resync(mirror: Mirror) -> None:
    """After SIGHUP the daemon still runs and has mirrored a cgroup nothing announced (no watcher,
    and the periodic pass 10 minutes away: only a full pass finds it); one line says why."""
    os.mkdir(mirror.cg("a"))
    mirror.start("--no-watch", resync_interval=600)
    assert mirror.proc is not None
    passes = mirror.full_passes()
    os.mkdir(mirror.cg("b"))
    mirror.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: os.path.exists(mirror.stat_path("b")) or mirror.proc is None or mirror.proc.poll() is not None,
             30, "b mirrored")
    assert mirror.proc.poll() is None, f"the daemon died of SIGHUP: exit {mirror.proc.returncode}"
    assert os.path.exists(mirror.stat_path("b"))
    wait_for(lambda: mirror.full_passes() > passes, 10, "the full pass counted")
    wait_for(lambda: "resync_requested" in mirror.log(), 10, "the SIGHUP logged")
    hups = [json.loads(line) for line in mirror.log().splitlines() if '"resync_requested"' in line]
    assert len(hups) == 1 and hups[0]["signal"] == "SIGHUP", hups
    assert mirror.in_sync()
