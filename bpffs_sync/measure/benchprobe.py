"""A probe process for `bench lag`: records when each of N entries appears, event-driven.

    python -m bpffs_sync.benchprobe cgroup|mirror WATCH_DIR N OUT_JSON [IDLE_SECONDS]

cgroup: time of IN_CREATE for each new directory in WATCH_DIR (the inotify floor).
mirror: WATCH_DIR is a mirror directory; for each new subdirectory, the time its stat file
        exists and a read() of it returned data (the pin's IN_CREATE, then open+read).
Prints "ready" once watching; writes {name: CLOCK_MONOTONIC seconds} to OUT_JSON when N were
seen, or (with IDLE_SECONDS) when nothing new was seen for that long: entries never seen are
simply absent (the caller counts them).
"""

from __future__ import annotations

import json
import os
import select
import sys
import time

from bpffs_sync.mirror.inotify import IN_CREATE, IN_ISDIR, Inotify

STAT = "hist_oncpu"


def _readable(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return bool(f.read())
    except OSError:
        return False


def main(argv: list[str]) -> int:
    mode, watch_dir, count, out = argv[0], os.fsencode(argv[1]), int(argv[2]), argv[3]
    idle_ms = round(float(argv[4]) * 1e3) if len(argv) > 4 else -1
    ino = Inotify()
    top = ino.add_watch(watch_dir, IN_CREATE)  # read here, in this thread: no reader thread
    dirs: dict[int, str] = {}
    seen: dict[str, float] = {}
    poller = select.poll()
    poller.register(ino.fileno(), select.POLLIN)  # to give up after idle_ms without an event
    print("ready", flush=True)
    while len(seen) < count:
        if not poller.poll(idle_ms):
            break
        for ev in ino.read():
            now = time.monotonic()
            name = ev.name.decode(errors="surrogateescape")
            if ev.wd == top and ev.mask & IN_ISDIR:
                if mode == "cgroup":
                    seen.setdefault(name, now)
                    continue
                sub = os.path.join(watch_dir, ev.name)
                dirs[ino.add_watch(sub, IN_CREATE)] = name
                stat = os.path.join(os.fsdecode(sub), STAT)
                if os.path.exists(stat) and _readable(stat):  # made before our watch
                    seen.setdefault(name, time.monotonic())
            elif ev.wd in dirs and name == STAT:
                owner = dirs[ev.wd]
                if _readable(os.path.join(os.fsdecode(watch_dir), owner, STAT)):
                    seen.setdefault(owner, time.monotonic())
    with open(out, "w", encoding="utf-8") as f:
        json.dump(seen, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
