"""Stopping a long run of operations between two of them: the daemon's SIGTERM inside a pass.

A pass (reconciler.py) runs with the daemon's stop event bound (`stopping`); the loops that can
run long -- a walk's directories (dirfd.descend), a subtree's removal (bpffs.remove_tree_at), an
apply's ops -- call `check()` between steps, which raises Interrupted once the event is set. The
pass then ends where it is: every op is idempotent and the mirror level-triggered, so whatever was
left is done by the next pass (of this daemon or the next one). Outside a pass (`run --once`,
verify, clean) nothing is bound and check() costs a context-variable read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_stop: ContextVar[threading.Event | None] = ContextVar("bpffs_sync_stop", default=None)


class Interrupted(Exception):
    """The daemon is stopping: the pass ends between two operations."""


@contextmanager
def stopping(event: threading.Event | None) -> Iterator[None]:
    """Bind event for the code run inside (None: nothing to check)."""
    token = _stop.set(event)
    try:
        yield
    finally:
        _stop.reset(token)


def requested() -> bool:
    event = _stop.get()
    return event is not None and event.is_set()


def check() -> None:
    """Raise Interrupted when the bound stop event is set."""
    event = _stop.get()
    if event is not None and event.is_set():
        raise Interrupted("stop requested")
