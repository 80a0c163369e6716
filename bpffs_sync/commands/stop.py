"""`bpffs-sync stop`: SIGTERM to the `bpffs-sync run` holding this bpffs's lock; wait until it lets go."""

from __future__ import annotations

import argparse
import os
import time

from bpffs_sync import preflight, printable, rundir
from bpffs_sync.commands.common import EXIT_OK
from bpffs_sync.errors import EnvironmentProblem


def main(args: argparse.Namespace) -> int:
    """SIGTERM to the process holding this bpffs's lock, if it is a bpffs-sync run; wait until it lets go."""
    preflight.require_root()
    bpffs_dir = os.path.abspath(args.bpffs or preflight.DEFAULT_BPFFS)
    if args.bpffs is None and not preflight.is_bpffs(bpffs_dir):
        print(f"no bpffs at {printable.escape(bpffs_dir)}: no bpffs-sync run to stop")
        return EXIT_OK
    preflight.require_directory("--bpffs", bpffs_dir)
    preflight.require_bpffs_root(bpffs_dir)
    who = rundir.holder(bpffs_dir)
    if who is None:
        print(f"no bpffs-sync run holds {printable.escape(bpffs_dir)}")
        return EXIT_OK
    if not who.verified or who.role != rundir.ROLE_RUN:
        raise EnvironmentProblem("stop", bpffs_dir, 0, f"{who.describe()} holds the lock and is not a bpffs-sync run: "
                                                       "not signalled")
    if rundir.signal_holder(bpffs_dir, who):
        deadline = time.monotonic() + args.timeout
        while (now := rundir.holder(bpffs_dir)) is not None and now.pid == who.pid:
            if time.monotonic() > deadline:
                raise EnvironmentProblem("stop", bpffs_dir, 0, f"{who.describe()} still holds the lock after "
                                                               f"{args.timeout:g} s")
            time.sleep(0.05)
    print(f"stopped {who.describe()} on {printable.escape(bpffs_dir)}")
    return EXIT_OK
