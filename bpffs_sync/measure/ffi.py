"""The lab's foreign calls: what only the report uses to read a stat the other ways (a map lookup,
a batch lookup of a whole map, a test run of a BPF_PROG_TYPE_SYSCALL program, a cgroup iterator made
and read per read) and to set a knob (a map update). The agent never makes these calls, so they live
here, apart from the node agent's binding (docs/architecture.md, "Backends" and "The lab").

Built on libbpf.py: its library handle, its prototype declarations (`_fn`: restype, argtypes,
use_errno=True, and a Python signature mypy checks) and its error checks (a negative result raises
LibbpfError with errno and libbpf's last log lines). libbpf.py never imports this module.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
from collections.abc import Callable
from ctypes import POINTER, Structure, c_int, c_size_t, c_uint32, c_uint64, c_void_p
from typing import TYPE_CHECKING

from bpffs_sync import libbpf
from bpffs_sync.errors import LibbpfError
from bpffs_sync.libbpf import BpfLink, BpfProgram, Buffer, _check_int, _check_ptr, _fn, _lib

if TYPE_CHECKING:
    from _ctypes import _CArgObject as ByRef  # what ctypes.byref() returns


class TestRunOpts(Structure):
    """struct bpf_test_run_opts (libbpf bpf.h), up to batch_size."""

    _fields_ = (
        ("sz", c_size_t), ("data_in", c_void_p), ("data_out", c_void_p), ("data_size_in", c_uint32),
        ("data_size_out", c_uint32), ("ctx_in", c_void_p), ("ctx_out", c_void_p), ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32), ("retval", c_uint32), ("repeat", c_int), ("duration", c_uint32),
        ("flags", c_uint32), ("cpu", c_uint32), ("batch_size", c_uint32),
    )


class IterAttachOpts(Structure):
    """struct bpf_iter_attach_opts (24 bytes)."""

    _fields_ = (("sz", c_size_t), ("link_info", c_void_p), ("link_info_len", c_uint32))


_map_lookup: Callable[[int, Buffer, Buffer], int] = _fn(_lib, "bpf_map_lookup_elem", c_int, c_int, c_void_p,
                                                        c_void_p)
_map_update: Callable[[int, Buffer, Buffer, int], int] = _fn(_lib, "bpf_map_update_elem", c_int, c_int, c_void_p,
                                                             c_void_p, c_uint64)
_prog_test_run: Callable[[int, ByRef], int] = _fn(_lib, "bpf_prog_test_run_opts", c_int, c_int, POINTER(TestRunOpts))
_prog_attach_iter: Callable[[int, ByRef], int | None] = _fn(_lib, "bpf_program__attach_iter", c_void_p, c_void_p,
                                                            POINTER(IterAttachOpts))
_lookup_batch: Callable[[int, Buffer | None, Buffer, Buffer, Buffer, ByRef, None], int] = _fn(
    _lib, "bpf_map_lookup_batch", c_int, c_int, c_void_p, c_void_p, c_void_p, c_void_p, POINTER(c_uint32), c_void_p)


def map_lookup(fd: int, key: bytes, value_size: int, what: str = "map") -> bytes | None:
    """The value at key, None when absent."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    if _map_lookup(fd, k, v) < 0:
        err = ctypes.get_errno()
        if err == errno_mod.ENOENT:
            return None
        raise LibbpfError("bpf_map_lookup_elem", what, err, "")
    return v.raw


BATCH_TOKEN = 8  # bytes for BPF_MAP_LOOKUP_BATCH's token (a hash map's is a u32 bucket index)


def map_lookup_batch(fd: int, key_size: int, value_size: int, chunk: int = 4096,
                     what: str = "map") -> list[tuple[bytes, bytes]]:
    """Every (key, value) of the map by BPF_MAP_LOOKUP_BATCH, `chunk` entries per bpf(2) call at most
    (the report's scrape table). The first call passes no token, each next one the token the previous
    returned; the kernel answers ENOENT with the last chunk (maybe empty) when the walk is over."""
    keys = ctypes.create_string_buffer(key_size * chunk)
    values = ctypes.create_string_buffer(value_size * chunk)
    token_in: Buffer | None = None
    token_out = ctypes.create_string_buffer(BATCH_TOKEN)
    out: list[tuple[bytes, bytes]] = []
    while True:
        count = c_uint32(chunk)
        ctypes.set_errno(0)
        ret = _lookup_batch(fd, token_in, token_out, keys, values, ctypes.byref(count), None)
        err = 0 if ret >= 0 else (-ret if ret != -1 else ctypes.get_errno())
        if err not in (0, errno_mod.ENOENT):
            raise LibbpfError("bpf_map_lookup_batch", what, err, "")
        kraw, vraw = keys.raw, values.raw
        out += [(kraw[i * key_size:(i + 1) * key_size], vraw[i * value_size:(i + 1) * value_size])
                for i in range(count.value)]
        if err == errno_mod.ENOENT:
            return out
        token_in = ctypes.create_string_buffer(token_out.raw, BATCH_TOKEN)


def map_update(fd: int, key: bytes, value: bytes, what: str = "map") -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    _check_int(_map_update(fd, k, v, 0), "bpf_map_update_elem", what)


def prog_test_run_ctx(prog_fd: int, ctx: bytes, what: str = "prog") -> tuple[int, bytes]:
    """BPF_PROG_TEST_RUN of a BPF_PROG_TYPE_SYSCALL program: ctx in; the kernel copies the context
    back (the program's output). Returns (the program's return value, the context after the run)."""
    buf = ctypes.create_string_buffer(ctx, len(ctx))
    opts = TestRunOpts(sz=ctypes.sizeof(TestRunOpts), ctx_in=ctypes.addressof(buf), ctx_size_in=len(ctx))
    _check_int(_prog_test_run(prog_fd, ctypes.byref(opts)), "bpf_prog_test_run_opts", what)
    return int(opts.retval), buf.raw


def attach_cgroup_iter(prog: BpfProgram, cgroup_fd: int, what: str) -> BpfLink:
    """Attach a SELF_ONLY cgroup iterator of prog (loaded) for the cgroup open at cgroup_fd, through
    libbpf (bpf_program__attach_iter); destroy() or `with` closes it. The agent makes its per-cgroup
    links with one raw bpf(2) call instead (BpfProgram.link_cgroup_iter)."""
    info = libbpf.IterLinkInfoCgroup(order=libbpf.BPF_CGROUP_ITER_SELF_ONLY, cgroup_fd=cgroup_fd, cgroup_id=0)
    opts = IterAttachOpts(sz=ctypes.sizeof(IterAttachOpts), link_info=ctypes.addressof(info),
                          link_info_len=ctypes.sizeof(info))
    ctypes.set_errno(0)
    link = _prog_attach_iter(prog.handle, ctypes.byref(opts))
    return BpfLink(_check_ptr(link, "bpf_program__attach_iter", what))


def iter_read(link: BpfLink, size: int = 32768, what: str = "iter") -> bytes:
    """Open an iterator instance of link (bpf_iter_create), read it once, close it."""
    fd = libbpf.iter_create(link.fd(what), what)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)
