"""The scrape table's one-walk routes (report/scrape.py): one cgroup iterator, linked with
BPF_CGROUP_ITER_DESCENDANTS_PRE to the set's root, read once per scrape.

- hist_walk: hist_oncpu's own reader (the program behind every mirror file): the files' text, a block
  per cgroup, in one read() stream;
- Walker: bench/report/bpf/scrape.bpf.c, loaded against the bed's pinned stats map: scrape_lines (a
  text line per cgroup) and scrape_ring (a binary record per cgroup into a ring buffer, the seq_file
  gets a summary).

A cgroup iterator cannot resume in a second read() (the kernel dropped cgroup_mutex in between and
answers EOPNOTSUPP), and one read() returns at most the seq_file's buffer, so the text walks end where
their output outgrows it: read_all() says so (WalkCut, with how far it got) instead of a number.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from contextlib import ExitStack

from bpffs_sync import libbpf
from bpffs_sync.errors import SyncError
from bpffs_sync.histogram import parse_stat
from bpffs_sync.measure.report import compiled
from bpffs_sync.measure.report.bed import Bed
from bpffs_sync.mirror.cgtree import consume_ring

Scrape = Callable[[], dict[int, int]]
RING = "records"
REC = struct.Struct("<QQQ")  # struct scrape_rec: cgroup id, total_ns, slices
SUMMARY = struct.Struct("<QQ")  # struct scrape_summary: records, dropped
_PAGE = mmap.PAGESIZE
READ_SIZE = 1 << 20


class WalkCut(SyncError):
    """The walk's output did not come back whole."""


def read_all(fd: int, what: str) -> tuple[bytes, int]:
    """Everything an iterator fd gives until EOF, and how many read() calls returned data; a read()
    that fails raises WalkCut saying after how many bytes."""
    parts: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, READ_SIZE)
        except OSError as err:
            raise WalkCut(f"read() #{len(parts) + 1} of the iterator", what, err.errno or 0,
                          f"after {sum(map(len, parts))} bytes in {len(parts)} read()") from err
        if not chunk:
            return b"".join(parts), len(parts)
        parts.append(chunk)


def split_blocks(text: str) -> list[str]:
    """hist_oncpu's reader output for many cgroups: one block per cgroup, each from its
    `cgroup_id:` line."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("cgroup_id:"):
            blocks.append([])
        if blocks:
            blocks[-1].append(line)
    return ["\n".join(b) for b in blocks]


def parse_hist(text: str) -> dict[int, int]:
    out = {}
    for block in split_blocks(text):
        s = parse_stat(block).summary
        out[s["cgroup_id"]] = s["total_ns"]
    return out


def parse_lines(text: str) -> dict[int, int]:
    """scrape_lines' output: `<cgroup id> <total_ns> <slices>` per line."""
    out = {}
    for line in text.splitlines():
        cg, total, _ = line.split()
        out[int(cg)] = int(total)
    return out


def _text_walk(link_fd: int, what: str, parse: Callable[[str], dict[int, int]]) -> Scrape:
    def scrape() -> dict[int, int]:
        fd = libbpf.iter_create(link_fd, what)
        try:
            raw, _ = read_all(fd, what)
        except WalkCut as cut:
            # How far it got: the first read()'s records (read again, untimed: the scrape failed anyway).
            first = libbpf.iter_create(link_fd, what)
            try:
                got = len(parse(os.read(first, READ_SIZE).decode()))
            finally:
                os.close(first)
            raise WalkCut(cut.op, what, cut.errno, f"{cut.detail}, {got} cgroups in the first read() "
                          "(a cgroup iterator cannot resume in a second read())") from cut
        finally:
            os.close(fd)
        return parse(raw.decode())
    return scrape


def _link(stack: ExitStack, prog: libbpf.BpfProgram, root_fd: int, what: str) -> int:
    link = prog.link_cgroup_iter(root_fd, what, libbpf.BPF_CGROUP_ITER_DESCENDANTS_PRE)
    stack.callback(os.close, link)
    return link


def hist_walk(stack: ExitStack, reader: libbpf.BpfProgram, root_fd: int, what: str) -> Scrape:
    return _text_walk(_link(stack, reader, root_fd, what), what, parse_hist)


def consume(cons: mmap.mmap, data: mmap.mmap, ring_bytes: int) -> bytes:
    """Every committed record from the consumer position to the producer's, headers dropped; the
    ring is then empty (the agent's reader, mirror/cgtree.py)."""
    (end,) = struct.unpack_from("<Q", data, 0)
    return consume_ring(cons, data, end, ring_bytes)


def parse_records(blob: bytes) -> dict[int, int]:
    return {cg: total for cg, total, _ in REC.iter_unpack(blob)}


class Walker:
    """scrape.bpf.o loaded against the bed's stats map, its ring buffer mapped."""

    def __init__(self, bed: Bed) -> None:
        self._obj = libbpf.BpfObject(compiled.bpf_object("scrape"))
        self._maps: list[mmap.mmap] = []  # closed by close(), also when the second mmap fails
        try:
            self._obj.set_map_pin_path("oncpu_stats", bed.map_pin)
            self._obj.load()
            fd = self._obj.map_fd(RING)
            self.ring_bytes = libbpf.map_info(fd).max_entries
            self._cons = mmap.mmap(fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            self._maps.append(self._cons)
            self._data = mmap.mmap(fd, _PAGE + 2 * self.ring_bytes, mmap.MAP_SHARED, mmap.PROT_READ, offset=_PAGE)
            self._maps.append(self._data)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for m in self._maps:
            m.close()
        self._obj.close()

    def walk(self, stack: ExitStack, kind: str, root_fd: int, what: str) -> Scrape:
        """kind "lines" or "ring": a scrape of the subtree at root_fd through that program."""
        link = _link(stack, self._obj.program(f"scrape_{kind}"), root_fd, what)
        if kind == "lines":
            return _text_walk(link, what, parse_lines)

        def scrape() -> dict[int, int]:
            fd = libbpf.iter_create(link, what)
            try:
                summary, _ = read_all(fd, what)
            finally:
                os.close(fd)
                # also after a failed read: the next scrape must not find this walk's records
                blob = consume(self._cons, self._data, self.ring_bytes)
            return ring_values(summary, blob, what)
        return scrape


def ring_values(summary: bytes, blob: bytes, what: str) -> dict[int, int]:
    """scrape_ring's values from its summary and the records consumed, checked: the summary whole,
    nothing dropped, and as many records in the ring as the walk says it wrote."""
    if len(summary) != SUMMARY.size:
        raise WalkCut("ring buffer summary", what, 0, f"{len(summary)} bytes, not {SUMMARY.size}")
    records, dropped = SUMMARY.unpack(summary)
    if dropped:
        raise WalkCut("ring buffer", what, 0, f"{dropped} of {records + dropped} records did not fit")
    if len(blob) != records * REC.size:
        raise WalkCut("ring buffer", what, 0, f"{len(blob)} bytes of records consumed, the walk wrote {records} "
                      f"records of {REC.size}")
    return parse_records(blob)
