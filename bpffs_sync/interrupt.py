"""Stopping a long run of operations between two of them: the daemon's SIGTERM inside a pass.

A pass (reconciler.py) runs with the daemon's stop event bound (`stopping`); the loops that can
run long -- a walk's directories (dirfd.descend), a subtree's removal (bpffs.remove_tree_at), an
apply's ops -- call `check()` between steps, which raises Interrupted once the event is set. The
pass then ends where it is: every op is idempotent and the mirror level-triggered, so whatever was
left is done by the next pass (of this daemon or the next one). Outside a pass (`run --once`,
verify, clean) nothing is bound and check() costs a context-variable read.

Preemption: the daemon also binds a `preempt` test (a hint for another top-level subtree is
waiting and this pass ran long enough); check() then raises Preempted, the pass's scopes go back
on the queue and the waiting hint is served first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_stop: ContextVar[threading.Event | None] = ContextVar("bpffs_sync_stop", default=None)
_yield: ContextVar[Callable[[], bool] | None] = ContextVar("bpffs_sync_yield", default=None)


class Interrupted(Exception):
    """The daemon is stopping: the pass ends between two operations."""


class Preempted(Interrupted):
    """Work elsewhere is waiting: the pass ends between two operations and is taken up again later."""


@contextmanager
def stopping(event: threading.Event | None, preempt: Callable[[], bool] | None = None) -> Iterator[None]:
    """Bind event (and preempt: true when the pass should make way) for the code run inside
    (None: nothing to check)."""
    token = _stop.set(event)
    ytoken = _yield.set(preempt)
    try:
        yield
    finally:
        _yield.reset(ytoken)
        _stop.reset(token)


def requested() -> bool:
    event = _stop.get()
    return event is not None and event.is_set()


def check() -> None:
    """Raise Interrupted when the bound stop event is set, Preempted when the bound preempt says so."""
    event = _stop.get()
    if event is not None and event.is_set():
        raise Interrupted("stop requested")
    preempt = _yield.get()
    if preempt is not None and preempt():
        raise Preempted("work elsewhere is waiting")
