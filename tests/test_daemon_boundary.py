"""The daemon's error boundary (issue 8, class 6), in process: a step that fails is logged with
its reconcile_id, backed off per key and retried; the daemon never dies of it.

Only the failure is injected (monkeypatch raising where the kernel would); every cgroup, pin and
watch is real."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from helpers import Mirror, wait_for

from bpffs_sync.errors import SyncError
from bpffs_sync.mirror.daemon import Daemon, RunOptions
from bpffs_sync.mirror.forest import Selection
from bpffs_sync.mirror.mirrors import Mirrors
from bpffs_sync.programs import lookup

Entry = MutableMapping[str, Any]


@pytest.fixture
def logs() -> Iterator[list[Entry]]:
    """Every log entry, with the context (reconcile_id) merged in as the real set-up does."""
    capture = structlog.testing.LogCapture()
    saved = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)


@dataclass
class Running:
    daemon: Daemon
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)


@contextmanager
def running(mirror: Mirror, selection: Selection | None = None) -> Iterator[Running]:
    """A Daemon on a thread (no periodic pass: only start-up, events and retries act)."""
    daemon = Daemon(mirror.layout, [lookup("hist_oncpu")], RunOptions(resync_interval=3600), selection)
    run = Running(daemon, threading.Thread(target=lambda: _run(run), name="daemon", daemon=True))
    run.thread.start()
    try:
        yield run
    finally:
        daemon.request_stop()
        run.thread.join(30)


def _run(run: Running) -> None:
    try:
        run.daemon.run()
    except BaseException as err:
        run.errors.append(err)


def fail_first(n: int, exc: BaseException, real: Callable[..., Any]) -> tuple[Callable[..., Any], list[int]]:
    """A stand-in for `real` that raises exc on its first n calls; calls[0] counts the calls."""
    calls = [0]

    def stand_in(*args: Any, **kw: Any) -> Any:
        calls[0] += 1
        if calls[0] <= n:
            raise exc
        return real(*args, **kw)

    return stand_in, calls


def failures(logs: list[Entry], step: str) -> list[Entry]:
    return [e for e in logs if e["event"] == "step_failed" and e["step"] == step]


def test_failed_refresh_is_retried_and_logged(mirror: Mirror, logs: list[Entry],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh that fails does not end the daemon: logged with a reconcile_id, retried."""
    stand_in, calls = fail_first(2, SyncError("listdir", "/proc/self/mountinfo", 5), Mirrors.refresh)
    monkeypatch.setattr(Mirrors, "refresh", stand_in)
    with running(mirror) as run:
        wait_for(lambda: os.path.exists(mirror.stat_path("")) or not run.thread.is_alive(), 20, "the root mirrored")
        assert run.thread.is_alive(), run.errors
        os.mkdir(mirror.cg("after"))
        wait_for(lambda: os.path.exists(mirror.stat_path("after")), 10, "a new cgroup mirrored")
    assert calls[0] == 3
    failed = failures(logs, "refresh")
    assert [e["retry_in"] for e in failed] == [0.1, 0.2]
    assert all(e["reconcile_id"] for e in failed)


def test_failed_watch_resync_is_retried(mirror: Mirror, logs: list[Entry], monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch resync that fails does not end the daemon; it is retried after a back-off."""
    stand_in, calls = fail_first(1, OSError(28, "inotify watch limit reached"), Mirrors.resync_watches)
    monkeypatch.setattr(Mirrors, "resync_watches", stand_in)
    with running(mirror) as run:
        wait_for(lambda: calls[0] >= 2 or not run.thread.is_alive(), 20, "the resync retried")
        assert run.thread.is_alive(), run.errors
        os.mkdir(mirror.cg("after"))
        wait_for(lambda: os.path.exists(mirror.stat_path("after")), 10, "a new cgroup mirrored by its event")
    assert [e["errno"] for e in failures(logs, "watches")] == [28]


def test_failed_pass_log_keeps_reconcile_id(mirror: Mirror, logs: list[Entry],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that raises is logged with a reconcile_id, and its scope is retried."""
    stand_in, _ = fail_first(1, SyncError("scandir", mirror.cgroup_root, 5), Mirrors.reconcile)
    monkeypatch.setattr(Mirrors, "reconcile", stand_in)
    with running(mirror) as run:
        wait_for(lambda: os.path.exists(mirror.stat_path("")) or not run.thread.is_alive(), 20, "the retry")
        assert run.thread.is_alive(), run.errors
    (failed,) = failures(logs, "pass")
    assert failed["tree"] == "cgroup"
    assert isinstance(failed.get("reconcile_id"), str) and len(failed["reconcile_id"]) == 12


def test_run_once_raises_after_a_failed_pass(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --once` whose pass failed ends in SyncError (the command's exit 2), not in success."""
    stand_in, _ = fail_first(1, SyncError("scandir", mirror.cgroup_root, 5), Mirrors.reconcile)
    monkeypatch.setattr(Mirrors, "reconcile", stand_in)
    daemon = Daemon(mirror.layout, [lookup("hist_oncpu")], RunOptions(once=True))
    with pytest.raises(SyncError, match="step"):
        daemon.run()


def test_backoff_is_per_tree(mirror: Mirror, v1_memory: str, logs: list[Entry],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A v1 tree that keeps failing backs off exponentially while the healthy v2 tree keeps passing."""
    real = Mirrors.reconcile

    def v1_fails(self: Mirrors, key: str, scopes: list[tuple[str, ...]], **kw: Any) -> Any:
        if key.startswith("cgroup-v1/"):
            raise SyncError("scandir", key, 5)
        return real(self, key, scopes, **kw)

    monkeypatch.setattr(Mirrors, "reconcile", v1_fails)
    with running(mirror, Selection([v1_memory])) as run:
        for i in range(10):  # the v2 tree passes between the v1 tree's retries
            seen = len(failures(logs, "pass"))
            if seen >= 5:
                break
            os.mkdir(mirror.cg(f"healthy{i}"))
            stat = mirror.stat_path(f"healthy{i}")
            wait_for(lambda: os.path.exists(stat), 10, "v2 mirrored")  # noqa: B023 - used at once
            wait_for(lambda: len(failures(logs, "pass")) > seen, 10, "the v1 tree's next retry")  # noqa: B023
        assert run.thread.is_alive(), run.errors
    delays = [e["retry_in"] for e in failures(logs, "pass")][:5]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6]
    first, fifth = (logs.index(e) for e in failures(logs, "pass")[0:5:4])
    assert any(e["event"] == "reconcile_pass" for e in logs[first:fifth])  # v2 passed meanwhile
