"""Fixtures only tests use, out of the agent's package: a cgroup churn thread (the race partner of
tree walks: tests/test_cgtree.py, kernel-approach1's walk tests) and the kernel series' stats loaded
once per test session (kernel-approach1/2 guest suites: LoadedStats). The guest suites' conftest.py
put this directory on sys.path to import it."""

from __future__ import annotations

import errno
import os
import random
import threading
from typing import TypeVar

from bpffs_sync.backends.statlink import StatLink
from bpffs_sync.paths import Layout
from bpffs_sync.programs import StatProgram

S = TypeVar("S", bound=StatLink)


class CgroupChurn:
    """mkdir and rmdir of nested cgroups at random places under a tree, on a thread, until stopped: the
    race partner of the kernel series' walk tests. `during` counts the ops made while the block ran."""

    def __init__(self, tree: str, seed: int) -> None:
        self.tree = tree
        self.seed = seed
        self.rng = random.Random(seed)
        self.live: list[str] = []
        self.ops = 0
        self.during = 0  # ops between __enter__ returning and __exit__
        self.stop = threading.Event()
        self.running = threading.Event()
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self._churn()
        except OSError as err:
            self.error = err
            self.running.set()

    def _churn(self) -> None:
        n = 0
        while not self.stop.is_set():
            if self.live and self.rng.random() < 0.45:
                path = self.live.pop(self.rng.randrange(len(self.live)))
                try:
                    os.rmdir(path)
                except OSError as err:
                    if err.errno != errno.EBUSY:  # it has children: try later
                        raise
                    self.live.append(path)
                    continue
            else:
                parent = self.rng.choice([self.tree, *self.live[-50:]])
                path = os.path.join(parent, f"s{self.seed}n{n}")  # unique across churns of a tree
                n += 1
                os.mkdir(path)
                self.live.append(path)
            self.ops += 1
            self.running.set()

    def __enter__(self) -> CgroupChurn:
        """Returns once the thread is mkdir-ing and rmdir-ing (the race needs it running)."""
        self.thread.start()
        self.running.wait(timeout=30)
        self.during = -self.ops
        return self

    def __exit__(self, *exc: object) -> None:
        self.during += self.ops  # racy by a few ops at most: only > 0 is asserted
        self.stop.set()
        self.thread.join()
        if self.error is not None:
            raise AssertionError(f"the churn thread failed: {self.error!r}")


class LoadedStats:
    """Stats loaded as kernel-series links once per test session and handed to each test in its own
    bpffs (StatLink.rehome: the map pinned and a collector attached there). One load of hist_oncpu
    takes minutes on the debug kernel under TCG, and the guest suites' fixtures would otherwise load
    it for every test. A test that closes its stat gets a fresh load the next time."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[type[StatLink], str], StatLink] = {}

    def get(self, cls: type[S], layout: Layout, spec: StatProgram) -> S:
        key = (cls, spec.name)
        cached = self._loaded.get(key)
        if isinstance(cached, cls) and not cached.closed:
            cached.rehome(layout)
            return cached
        fresh = cls(layout, spec)
        self._loaded[key] = fresh
        return fresh

    def close(self) -> None:
        for s in self._loaded.values():
            s.close()
        self._loaded.clear()

    def __enter__(self) -> LoadedStats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
