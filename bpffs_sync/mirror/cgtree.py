"""The whole cgroup tree in one read: bpf/cgroup_tree.bpf.c, loaded once per process.

A cgroup iterator (BPF_CGROUP_ITER_DESCENDANTS_PRE, linked to the tree's root cgroup fd, v2 or
v1) walks the subtree under cgroup_mutex in the kernel and writes one record per live cgroup
(id, parent id, level, the kernfs name byte for byte) into a BPF ring buffer; the iterator's own
read() returns only a summary (how many records, how many did not fit). The ring buffer is
mmap'ed here and consumed after each read (bpf(2) ring buffer layout: a consumer page, a producer
page, the data pages mapped twice so a record is contiguous; each record an 8-byte header whose
length has the BUSY and DISCARD bits, padded to 8 bytes).

read() returns a Tree: the records back to back, headers dropped, how many, and the kernel's
digest of them (equal digests: an equal tree). Given the digest of the last read, an equal tree is
not copied out at all (records None: the ring is skipped). It raises TreeUnavailable: no libbpf,
BTF or ring buffers, the object not built, or a tree larger than the ring even after it grew.
The caller then walks cgroupfs instead (cgroupfs.walk).
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from dataclasses import dataclass

from bpffs_sync import libbpf, log
from bpffs_sync.errors import SyncError
from bpffs_sync.programs import object_dir

_log = log.get(__name__)

OBJECT = "cgroup_tree.bpf.o"
PROGRAM = "cgroup_tree"
RING = "tree"
HDR = struct.Struct("<QQHH")  # struct cgroup_tree_rec up to name (bpf/cgroup_tree.h)
SUMMARY = struct.Struct("<QQQ")  # struct cgroup_tree_summary
_RB_HDR = struct.Struct("<II")  # struct bpf_ringbuf_hdr: len (with flag bits), pg_off
_BUSY = 1 << 31
_DISCARD = 1 << 30
_PAGE = mmap.PAGESIZE
MIN_RING = 1 << 20
MAX_RING = 1 << 28  # 256 MiB: some 6 million cgroups of 16-byte names


class TreeUnavailable(SyncError):
    """The iterator cannot give the tree now: the caller walks cgroupfs instead."""


@dataclass(frozen=True, slots=True)
class Tree:
    records: bytes | None  # None: the digest equals the one the caller gave (the ring was skipped)
    count: int  # cgroups
    digest: int  # of every record in walk order (bpf/cgroup_tree.bpf.c)


class TreeReader:
    """cgroup_tree loaded, with its ring buffer mapped. One read at a time (a lock): the
    program's counters are globals and the ring has one consumer."""

    def __init__(self, ring_bytes: int = MIN_RING) -> None:
        self._lock = threading.Lock()
        self.ring_bytes = ring_bytes
        self._obj: libbpf.BpfObject | None = None
        self._cons: mmap.mmap | None = None
        self._data: mmap.mmap | None = None
        self._load(ring_bytes)

    def _load(self, ring_bytes: int) -> None:
        path = str(object_dir() / OBJECT)
        if not os.path.isfile(path):
            raise TreeUnavailable("load", path, 0, "not built (make bpf)")
        obj = libbpf.BpfObject(path)
        try:
            obj.set_map_max_entries(RING, ring_bytes)
            obj.load()
            fd = obj.map_fd(RING)
            cons = mmap.mmap(fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            try:
                data = mmap.mmap(fd, _PAGE + 2 * ring_bytes, mmap.MAP_SHARED, mmap.PROT_READ, offset=_PAGE)
            except BaseException:
                cons.close()
                raise
        except BaseException:
            obj.close()
            raise
        self.close()
        self._obj, self._cons, self._data, self.ring_bytes = obj, cons, data, ring_bytes

    def close(self) -> None:
        for m in (self._cons, self._data):
            if m is not None:
                m.close()
        if self._obj is not None:
            self._obj.close()
        self._obj = self._cons = self._data = None

    def read(self, cgroup_fd: int, what: str, unless: int | None = None) -> Tree:
        """The records of every live cgroup at and below the cgroup open at cgroup_fd, pre-order
        (not copied when their digest is `unless`). A ring too small for the tree is grown
        (reloaded) and the walk run again."""
        with self._lock:
            while True:
                blob, count, dropped, digest = self._walk(cgroup_fd, what, unless)
                if not dropped:
                    return Tree(blob, count, digest)
                if self.ring_bytes >= MAX_RING:
                    raise TreeUnavailable("cgroup tree", what, 0, f"{count + dropped} cgroups do not fit the ring")
                grown = self.ring_bytes
                while grown < MAX_RING and grown < 2 * (len(blob or b"") + 16 * (count + dropped)):
                    grown *= 2
                _log.info("cgroup_tree_ring_grown", bytes=grown, cgroups=count + dropped)
                self._load(grown)

    def _walk(self, cgroup_fd: int, what: str, unless: int | None) -> tuple[bytes | None, int, int, int]:
        obj, cons, data = self._obj, self._cons, self._data
        if obj is None or cons is None or data is None:
            raise TreeUnavailable("cgroup tree", what, 0, "reader closed")
        link = obj.program(PROGRAM).link_cgroup_iter(cgroup_fd, what, libbpf.BPF_CGROUP_ITER_DESCENDANTS_PRE)
        try:
            it = libbpf.iter_create(link, what)
            try:
                summary = b""
                while chunk := _read(it, what):
                    summary += chunk
            finally:
                os.close(it)
        finally:
            os.close(link)
        if len(summary) != SUMMARY.size:
            raise TreeUnavailable("cgroup tree", what, 0, f"summary of {len(summary)} bytes")
        count, dropped, digest = SUMMARY.unpack(summary)
        (end,) = struct.unpack_from("<Q", data, 0)  # the producer position
        if digest == unless and not dropped:
            struct.pack_into("<Q", cons, 0, end)  # nothing to copy: the ring is skipped
            return None, count, dropped, digest
        return consume_ring(cons, data, end, self.ring_bytes), count, dropped, digest


def consume_ring(cons: mmap.mmap, data: mmap.mmap, end: int, ring_bytes: int) -> bytes:
    """Every record of a mapped bpf(2) ring buffer (consumer page cons, data pages data) from the
    consumer position to end (the producer's), headers dropped; the ring is then empty (the
    consumer position moved to end)."""
    (pos,) = struct.unpack_from("<Q", cons, 0)
    mask = ring_bytes - 1
    parts = []
    unpack = _RB_HDR.unpack_from
    while pos < end:
        off = _PAGE + (pos & mask)
        length, _ = unpack(data, off)
        if length & _BUSY:  # not committed: cannot happen after read() returned; stop here
            break
        size = length & ~(_BUSY | _DISCARD)
        if not length & _DISCARD:
            parts.append(data[off + 8: off + 8 + size])
        pos += (size + 8 + 7) & ~7
    struct.pack_into("<Q", cons, 0, pos)
    return b"".join(parts)


def _read(fd: int, what: str) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError as err:
        raise TreeUnavailable("read cgroup iterator", what, err.errno or 0) from err


class _Shared:
    reader: TreeReader | None = None
    error: str = ""
    lock = threading.Lock()


def shared() -> TreeReader | None:
    """The process's reader, loaded on first use; None (logged once) when it cannot load."""
    with _Shared.lock:
        if _Shared.reader is None and not _Shared.error:
            try:
                _Shared.reader = TreeReader()
            except SyncError as err:
                _Shared.error = str(err)
                _log.warning("cgroup_tree_unavailable", error=_Shared.error, fallback="cgroupfs walk")
        return _Shared.reader
