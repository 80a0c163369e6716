"""The scrape table's routes (report/scrape.py): for one made set of cgroups (Scene), one reader per
route, set up once (fds opened, links made, undone by the caller's ExitStack) and called once per
scrape; each returns {cgroup id: value}. The one-walk routes are scrape_iter.py's.

A route that cannot run here is a Route without a reader and with the reason, found by a check run
now (reread_check: can a file opened once be read again from offset 0; _room_for: do N more fds fit
RLIMIT_NOFILE, raised to its hard limit for this process when they need it), never assumed.
"""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from bpffs_sync.histogram import parse_stat
from bpffs_sync.measure import ffi
from bpffs_sync.measure.report import scrape_iter
from bpffs_sync.measure.report.bed import Bed
from bpffs_sync.measure.report.mechanisms import HIST_SIZE, prog_total, stat_args

KEY_SIZE = 16  # struct cg_key
VALUE_SIZE = HIST_SIZE  # struct hist_value
READ_SIZE = 1 << 16


@dataclass(slots=True)
class Scene:
    """A made set: its root, its cgroups (parents first), their ids, the mirror's files for them;
    recharged: how many cgroups charge_all() ran in a second time."""

    root: str
    paths: list[str]
    ids: list[int]
    files: list[str]
    recharged: int = 0


def kv_value(text: str, key: str) -> int:
    """The value of `key` in a cgroupfs `key value` file (cpu.stat), parsed whole like a reader."""
    fields = dict(line.split(" ", 1) for line in text.splitlines())
    return int(fields[key])


def errno_text(err: OSError) -> str:
    code = err.errno or 0
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


Scrape = scrape_iter.Scrape


@dataclass(frozen=True, slots=True)
class Route:
    key: str
    label: str
    scrape: Scrape | None  # None: cannot run here (missing says why)
    missing: str = ""


def _cpu_stat(scene: Scene) -> Scrape:
    pairs = [(i, os.path.join(p, "cpu.stat")) for i, p in zip(scene.ids, scene.paths, strict=True)]

    def scrape() -> dict[int, int]:
        out = {}
        for i, path in pairs:
            with open(path, encoding="ascii") as f:
                out[i] = kv_value(f.read(), "usage_usec") * 1000
        return out
    return scrape


def _files(scene: Scene) -> Scrape:
    files = scene.files

    def scrape() -> dict[int, int]:
        out = {}
        for path in files:
            with open(path, encoding="utf-8") as f:
                s = parse_stat(f.read()).summary
            out[s["cgroup_id"]] = s["total_ns"]
        return out
    return scrape


def reread_check(path: str) -> str | None:
    """None when a file opened once can be read again from offset 0 with pread (data that starts
    with the first read's first word: the figures after it may move), else what pread gave (and
    lseek's answer, the other way back to 0)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first = os.read(fd, READ_SIZE)
        try:
            again = os.pread(fd, READ_SIZE, 0)
        except OSError as err:
            return f"pread(fd, {READ_SIZE}, 0) after a first read: {errno_text(err)}; {_lseek_note(fd)}"
        if again and again.split(maxsplit=1)[:1] == first.split(maxsplit=1)[:1]:
            return None
        return (f"pread(fd, {READ_SIZE}, 0) after a first read of {len(first)} bytes returned {len(again)} "
                f"bytes{' (end of file): the file does not start over at offset 0' if not again else ''}; "
                f"{_lseek_note(fd)}")
    finally:
        os.close(fd)


def _lseek_note(fd: int) -> str:
    """What lseek(fd, 0, SEEK_SET) says, the other way back to the start."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError as err:
        return f"lseek(fd, 0, SEEK_SET): {errno_text(err)}"
    return "lseek(fd, 0, SEEK_SET) succeeds"


def _room_for(n: int) -> str | None:
    """Raise the soft fd limit to the hard one if n more fds need it; None, or why they do not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = n + len(os.listdir("/proc/self/fd")) + 64
    if need > soft and need <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return None if need <= soft else f"{n} held fds do not fit RLIMIT_NOFILE {soft} (hard {hard})"


def _held(stack: ExitStack, paths: Sequence[str], keys: Sequence[int] | None,
          parse: Callable[[bytes], tuple[int, int]]) -> Scrape | str:
    """N fds held open; each scrape preads each from 0 (or why it cannot run here). keys: the id per
    path (None: parse gives it)."""
    why = reread_check(paths[0]) or _room_for(len(paths))
    if why:
        return why
    fds = []
    for p in paths:
        fds.append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
        stack.callback(os.close, fds[-1])
    ids = list(keys) if keys is not None else [0] * len(fds)

    def scrape() -> dict[int, int]:
        out = {}
        for i, fd in zip(ids, fds, strict=True):
            cg, value = parse(os.pread(fd, READ_SIZE, 0))
            out[cg or i] = value
        return out
    return scrape


def _parse_stat_bytes(raw: bytes) -> tuple[int, int]:
    s = parse_stat(raw.decode()).summary
    return s["cgroup_id"], s["total_ns"]


def _prog_run(bed: Bed, scene: Scene) -> Scrape:
    ctxs = [(i, stat_args(i)) for i in scene.ids]

    def scrape() -> dict[int, int]:
        out = {}
        for i, ctx in ctxs:
            _, got = ffi.prog_test_run_ctx(bed.prog_fd, ctx, "stat_by_id")
            total = prog_total(got)
            if total is not None:  # not found: the count check fails
                out[i] = total
        return out
    return scrape


def _batch(bed: Bed, scene: Scene) -> Scrape:
    wanted = set(scene.ids)

    def scrape() -> dict[int, int]:
        out = {}
        for key, value in ffi.map_lookup_batch(bed.map_fd, KEY_SIZE, VALUE_SIZE, what="oncpu_stats"):
            hierarchy, cg = int.from_bytes(key[:4], "little"), int.from_bytes(key[8:], "little")
            if hierarchy == 0 and cg in wanted:
                out[cg] = int.from_bytes(value[:8], "little")
        return out
    return scrape


ROUTES = {
    "cpu_stat": "cgroupfs cpu.stat x N: open + read + close, parse usage_usec (baseline)",
    "cpu_stat_held": "cgroupfs cpu.stat, N fds held open: pread(fd, buf, 0) each",
    "files": "user-space mirror: N pinned iterator files, open + read + close, parse",
    "files_held": "user-space mirror: N pinned iterator files held open: pread(fd, buf, 0) each",
    "iter_hist": "one cgroup iterator (descendants_pre) with hist_oncpu's reader: the files' text, one stream",
    "iter_lines": "one cgroup iterator (descendants_pre), one text line per cgroup (scrape_lines)",
    "iter_ring": "one cgroup iterator (descendants_pre), one record per cgroup into a ring buffer (scrape_ring)",
    "prog_run": "N x BPF_PROG_RUN of stat_by_id (cgroup id in, raw struct out)",
    "batch": "BPF_MAP_LOOKUP_BATCH of the whole stats map, these N kept",
}


def routes(bed: Bed, scene: Scene, walker: scrape_iter.Walker | str, stack: ExitStack) -> list[Route]:
    """Every route for one set, set up (fds opened, links made; undone by stack)."""
    made: dict[str, Scrape | str] = {  # a reader, or why the route cannot run here
        "cpu_stat": _cpu_stat(scene),
        "cpu_stat_held": _held(stack, [os.path.join(p, "cpu.stat") for p in scene.paths], scene.ids,
                               lambda raw: (0, kv_value(raw.decode(), "usage_usec") * 1000)),
        "files": _files(scene),
        "files_held": _held(stack, scene.files, None, _parse_stat_bytes),
        "prog_run": _prog_run(bed, scene),
        "batch": _batch(bed, scene),
    }
    root_fd = os.open(scene.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    stack.callback(os.close, root_fd)
    what = f"at {os.path.basename(scene.root)}"
    made["iter_hist"] = scrape_iter.hist_walk(stack, bed.loaded.reader, root_fd, what)
    for key in ("iter_lines", "iter_ring"):
        made[key] = walker if isinstance(walker, str) else walker.walk(stack, key.removeprefix("iter_"), root_fd, what)
    out = []
    for key, label in ROUTES.items():
        got = made[key]
        out.append(Route(key, label, None, got) if isinstance(got, str) else Route(key, label, got))
    return out
