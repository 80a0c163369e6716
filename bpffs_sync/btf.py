"""The running kernel's vmlinux BTF, read for what feature probes need: enum values and type names.

BTF (include/uapi/linux/btf.h, Documentation/bpf/btf.rst) is a header, a type section and a string
section. Each type is a `struct btf_type` (name_off, info, size_or_type: three u32) followed by
kind-specific data whose size depends only on the kind and vlen, so one forward pass finds every
type without resolving any. A query names what it asks for, and only those names are decoded:

- enumerators of any enum (BTF_KIND_ENUM and BTF_KIND_ENUM64), anonymous enums included:
  the UAPI numbers of a kernel series (BPF_PROG_TYPE_CGROUP_STAT, BPF_LINK_TYPE_CGROUP_STAT,
  BPF_F_CGROUP_STAT_CGROUPFS...) are read here, never hard-coded, so a renumbered series or a
  kernel without it is seen, not guessed;
- the names of structs and typedefs (struct bpf_stat_link, btf_trace_sched_switch...);
- the names of functions (BTF_KIND_FUNC): a kfunc a program calls is a FUNC of vmlinux's BTF
  (bpf_cgroup_acquire, the memcg kfuncs bpf_mem_cgroup_page_state...), so a stat that needs kfuncs
  the kernel lacks is refused before its load (programs.require_kfuncs).

Pure Python, no libbpf: readable by a process with no BPF capability. An unknown kind (a BTF newer
than this reader) is an error naming it, not a silent skip: skipping would misplace every type after.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from bpffs_sync.errors import KernelUnsupported

VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD, KIND_TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC = 9, 10, 11, 12, 13, 14, 15
KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 16, 17, 18, 19

# kind -> (bytes after the btf_type always, bytes per vlen member)
_EXTRA: dict[int, tuple[int, int]] = {
    KIND_INT: (4, 0),
    KIND_PTR: (0, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FWD: (0, 0),
    KIND_TYPEDEF: (0, 0),
    KIND_VOLATILE: (0, 0),
    KIND_CONST: (0, 0),
    KIND_RESTRICT: (0, 0),
    KIND_FUNC: (0, 0),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_FLOAT: (0, 0),
    KIND_DECL_TAG: (4, 0),
    KIND_TYPE_TAG: (0, 0),
    KIND_ENUM64: (0, 12),
}
# magic, version, flags, hdr_len, type_off, type_len, str_off, str_len; native order, as the kernel exports it
_HEADER = struct.Struct("=HBBIIIII")


@dataclass(frozen=True, slots=True)
class Found:
    """What a query found: the enumerators asked for that exist (name -> value), and the struct,
    typedef and function names asked for that exist."""

    enums: dict[str, int]
    structs: frozenset[str]
    typedefs: frozenset[str]
    funcs: frozenset[str] = frozenset()

    def enum_value(self, name: str) -> int | None:
        """The value of enumerator `name` (any enum, anonymous ones included); None if absent."""
        return self.enums.get(name)


def _offsets(strings: bytes, names: tuple[str, ...]) -> dict[int, str]:
    """string-section offset -> name, for every occurrence of each name as a whole string (BTF
    dedups strings, but a blob need not be deduplicated: every occurrence counts)."""
    out: dict[int, str] = {}
    for name in names:
        raw = name.encode()
        if strings.startswith(raw + b"\0"):
            out[0] = name
        needle, at = b"\0" + raw + b"\0", 0
        while (at := strings.find(needle, at)) >= 0:
            out[at + 1] = name
            at += 1
    return out


def query(
    data: bytes,
    *,
    enums: tuple[str, ...] = (),
    structs: tuple[str, ...] = (),
    typedefs: tuple[str, ...] = (),
    funcs: tuple[str, ...] = (),
    what: str = "btf",
) -> Found:
    """Look the names up in a raw BTF blob (as /sys/kernel/btf/vmlinux holds it), in one pass over
    its types; only the names asked for are decoded. Raises KernelUnsupported (one line) on a blob
    this reader cannot walk."""
    if len(data) < _HEADER.size:
        raise KernelUnsupported("read BTF", what, 0, "shorter than a BTF header")
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(data)
    if magic != BTF_MAGIC:
        raise KernelUnsupported("read BTF", what, 0, f"bad magic {magic:#x} (another byte order, or not BTF)")
    if hdr_len % 4 or type_off % 4 or type_len % 4 or hdr_len + str_off + str_len > len(data):
        raise KernelUnsupported("read BTF", what, 0, "section offsets out of bounds")
    strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
    enum_at, struct_at, typedef_at = _offsets(strings, enums), _offsets(strings, structs), _offsets(strings, typedefs)
    func_at = _offsets(strings, funcs)
    words = memoryview(data)[hdr_len + type_off : hdr_len + type_off + type_len].cast("I")
    found_enums: dict[str, int] = {}
    found_structs: set[str] = set()
    found_typedefs: set[str] = set()
    found_funcs: set[str] = set()
    pos, end = 0, len(words)
    while pos < end:
        name_off, info = words[pos], words[pos + 1]
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        extra = _EXTRA.get(kind)
        if extra is None:
            raise KernelUnsupported("read BTF", what, 0, f"unknown BTF kind {kind} at type offset {4 * pos}")
        body = pos + 3
        if kind == KIND_ENUM and enum_at:
            for i in range(body, body + 2 * vlen, 2):
                if (name := enum_at.get(words[i])) is not None:
                    value = words[i + 1]
                    found_enums[name] = value - (1 << 32) if info >> 31 and value >> 31 else value
        elif kind == KIND_ENUM64 and enum_at:
            for i in range(body, body + 3 * vlen, 3):
                if (name := enum_at.get(words[i])) is not None:
                    value = words[i + 2] << 32 | words[i + 1]
                    found_enums[name] = value - (1 << 64) if info >> 31 and value >> 63 else value
        elif kind == KIND_STRUCT and (name := struct_at.get(name_off)) is not None:
            found_structs.add(name)
        elif kind == KIND_TYPEDEF and (name := typedef_at.get(name_off)) is not None:
            found_typedefs.add(name)
        elif kind == KIND_FUNC and (name := func_at.get(name_off)) is not None:
            found_funcs.add(name)
        pos = body + (extra[0] + extra[1] * vlen) // 4
    return Found(found_enums, frozenset(found_structs), frozenset(found_typedefs), frozenset(found_funcs))


def read(
    path: str,
    *,
    enums: tuple[str, ...] = (),
    structs: tuple[str, ...] = (),
    typedefs: tuple[str, ...] = (),
    funcs: tuple[str, ...] = (),
) -> Found:
    """query() the BTF file at path; KernelUnsupported (one line) when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise KernelUnsupported("read BTF", path, err.errno or 0, err.strerror or "cannot read") from err
    return query(data, enums=enums, structs=structs, typedefs=typedefs, funcs=funcs, what=path)


@functools.cache
def vmlinux(
    *,
    enums: tuple[str, ...] = (),
    structs: tuple[str, ...] = (),
    typedefs: tuple[str, ...] = (),
    funcs: tuple[str, ...] = (),
) -> Found:
    """read() the running kernel's BTF, once per process and question (it cannot change without a
    reboot; the blob itself is not kept)."""
    return read(VMLINUX, enums=enums, structs=structs, typedefs=typedefs, funcs=funcs)


def vmlinux_or_none(
    *,
    enums: tuple[str, ...] = (),
    structs: tuple[str, ...] = (),
    typedefs: tuple[str, ...] = (),
    funcs: tuple[str, ...] = (),
) -> Found | None:
    """vmlinux(), or None on a kernel without readable BTF (a probe then says "not supported")."""
    try:
        return vmlinux(enums=enums, structs=structs, typedefs=typedefs, funcs=funcs)
    except KernelUnsupported:
        return None
