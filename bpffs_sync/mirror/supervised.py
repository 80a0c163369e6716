"""The error boundary of a watcher's one thread (inotify.Reader, watch.MountWatcher).

The thread runs `_loop()` until stop() or its first exception. That exception ends the thread, is
kept (`error`, and `failure` says why), and is reported once through on_death(reason), unless
the owner already asked it to stop. A thread that ended without one (while not stopped) is a
failure too, told by the `ended` text. It never carries on after an error: a supervisor replaces
the whole watcher (mirror/daemon.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress


def describe(err: BaseException) -> str:
    """A one-line reason for a death: the exception's type and message."""
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class Supervised:
    """Base of a watcher whose one thread (`_thread`, made by the subclass with target=_run)
    runs `_loop()` behind the boundary above; `ended` is the failure of a thread that ended
    without an error while not stopped."""

    def __init__(self, on_death: Callable[[str], None] | None, ended: str) -> None:
        self._on_death = on_death
        self._ended = ended
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def failure(self) -> str | None:
        """Why the thread is not watching (None while it is, before start(), or after stop())."""
        if self.error is not None:
            return describe(self.error)
        if self._started() and self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return self._ended
        return None

    def _started(self) -> bool:
        """Whether the thread was started, so that one not alive has ended (override to count a
        start() that raised)."""
        return self._thread is not None and self._thread.ident is not None

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # the boundary: kept, reported once, and the thread ends
            self.error = err
            if self._on_death is not None and not self._stop.is_set():
                with suppress(Exception):  # the supervisor's periodic check sees the failure anyway
                    self._on_death(describe(err))

    def _loop(self) -> None:
        raise NotImplementedError
