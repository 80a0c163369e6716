"""systemd's notify protocol (sd_notify(3)), without libsystemd: one datagram of `KEY=value` lines to the
AF_UNIX socket named by $NOTIFY_SOCKET.

The daemon (mirror/daemon.py) says READY=1 after its first full pass (Type=notify: `systemctl start`
returns once the mirror is built, not when the process exists), WATCHDOG=1 after a pass that completed
(WatchdogSec=: a loop stuck in a pass stops feeding and systemd restarts it), STATUS= one line for
`systemctl status`, STOPPING=1 when it leaves its loop.

- `NOTIFY_SOCKET` is a path (`/run/systemd/notify`) or, starting with `@`, a Linux abstract socket (the `@`
  stands for the leading NUL). Unset, or any other form (`vsock:...`): every call does nothing -- the same
  code runs under systemd, in a container and in a test.
- A send that fails (systemd gone, EAGAIN on a full queue) is logged once per kind of error at debug and
  otherwise ignored, as sd_notify's callers do: notification is advice, never a reason to stop mirroring.
- WATCHDOG=1 is sent at most once per MIN_GAP seconds: a burst of passes costs one datagram, not one each
  (systemd needs one per WatchdogSec; MIN_GAP is far below any sensible WatchdogSec).
"""

from __future__ import annotations

import os
import socket
import time

from bpffs_sync import log

_log = log.get(__name__)
MIN_GAP = 1.0  # seconds between two WATCHDOG=1


def _address(value: str | None) -> str | bytes | None:
    if not value or not value.startswith(("/", "@")):
        return None
    return b"\0" + os.fsencode(value[1:]) if value.startswith("@") else value


class Notifier:
    """$NOTIFY_SOCKET as read at construction; a no-op when it names no socket."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        self.address = _address(environ.get("NOTIFY_SOCKET"))
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        # sd_watchdog_enabled(3): the interval, when it is meant for this process.
        self.watchdog_usec = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0
        self._sock: socket.socket | None = None
        self._last_watchdog = -float("inf")
        self._failed: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """One datagram of `lines` (each `KEY=value`); True when it was sent."""
        if self.address is None:
            return False
        payload = "\n".join(lines).encode("utf-8", "backslashreplace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self.address)
        except OSError as err:
            kind = type(err).__name__
            if kind not in self._failed:
                self._failed.add(kind)
                _log.debug("sd_notify_failed", errno=err.errno, error=err.strerror or str(err))
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *(("STATUS=" + " ".join(status.splitlines()),) if status else ()))

    def watchdog(self, now: float | None = None) -> bool:
        """WATCHDOG=1, unless one went less than MIN_GAP ago."""
        now = time.monotonic() if now is None else now
        if self.address is None or now - self._last_watchdog < MIN_GAP:
            return False
        self._last_watchdog = now
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
