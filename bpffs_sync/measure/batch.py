"""BPF_MAP_LOOKUP_BATCH through libbpf (bpf_map_lookup_batch), for the report's scrape table: every
entry of a map in a few bpf(2) calls instead of one lookup per key. The lab's only (the agent never
reads a map in bulk), built on libbpf.py's prototypes and error checks like ffi.py.

For a hash map the batch token is the kernel's bucket index (a u32); the first call passes none,
each next call the token the previous one returned. The kernel answers ENOENT with the last chunk
(possibly empty) when the walk is over.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
from collections.abc import Callable
from ctypes import POINTER, c_int, c_uint32, c_void_p
from typing import TYPE_CHECKING

from bpffs_sync.errors import LibbpfError
from bpffs_sync.libbpf import Buffer, _fn, _lib

if TYPE_CHECKING:
    from _ctypes import _CArgObject as ByRef  # what ctypes.byref() returns

_lookup_batch: Callable[[int, Buffer | None, Buffer, Buffer, Buffer, ByRef, None], int] = _fn(
    _lib, "bpf_map_lookup_batch", c_int, c_int, c_void_p, c_void_p, c_void_p, c_void_p, POINTER(c_uint32), c_void_p)

TOKEN = 8  # bytes for the batch token (a hash map's is a u32)


def lookup_batch(fd: int, key_size: int, value_size: int, chunk: int = 4096,
                 what: str = "map") -> list[tuple[bytes, bytes]]:
    """Every (key, value) of the map, `chunk` entries per bpf(2) call at most."""
    keys = ctypes.create_string_buffer(key_size * chunk)
    values = ctypes.create_string_buffer(value_size * chunk)
    token_in: Buffer | None = None
    token_out = ctypes.create_string_buffer(TOKEN)
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
        token_in = ctypes.create_string_buffer(token_out.raw, TOKEN)
