"""A hostile delegated user, for the depth bench and tests: chains of cgroups far longer than
PATH_MAX, made (and removed) by name from the current directory, the way a user would.

Both run in a forked child (chdir is per process), so the caller's cwd never moves and no path
longer than PATH_MAX is ever needed. `remove_tree` also serves the cleanup of such a tree in
cgroupfs and of its mirror in bpffs (files unlinked first), where fixtures' path walks cannot.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from contextlib import suppress


def _child(body: Callable[[], None]) -> int:
    """Run body() in a forked child; returns its pid (exit 0: body returned, 1: it raised)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 1
        try:
            body()
            code = 0
        except BaseException as err:  # reported on stderr; the exit code says it failed
            print(f"hostile child: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    return pid


def spawn_chain(top: str, depth: int, name_len: int, uid: int, loop: bool = False) -> int:
    """As uid, in top: mkdir + chdir `depth` times with a name of name_len bytes; with loop, then
    rmdir the chain bottom-up and start again, until killed. Returns the child's pid."""
    name = b"b" * name_len

    def body() -> None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        while True:
            os.chdir(top)
            for _ in range(depth):
                os.mkdir(name)
                os.chdir(name)
            if not loop:
                return
            for _ in range(depth):
                os.chdir(b"..")
                os.rmdir(name)

    return _child(body)


def remove_tree(top: str, files: bool = False) -> None:
    """Remove every directory below top (top stays), post-order, moving by chdir; with files, the
    non-directories of each directory are unlinked first (a bpffs mirror's pins). Raises OSError
    when the child could not finish."""

    def body() -> None:
        os.chdir(top)
        stack: list[bytes] = []
        while True:
            with os.scandir(b".") as it:
                entries = list(it)
            sub = next((e.name for e in entries if e.is_dir(follow_symlinks=False)), None)
            if sub is not None:
                os.chdir(sub)
                stack.append(sub)
                continue
            if files:
                for e in entries:
                    os.unlink(e.name)
            if not stack:
                return
            os.chdir(b"..")
            os.rmdir(stack.pop())

    pid = _child(body)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(f"could not remove the tree below {top}")


def stop(pid: int) -> None:
    """Kill a hostile child and reap it."""
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)
