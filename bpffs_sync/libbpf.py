"""The node agent's ctypes binding: a thin, typed binding of the libbpf.so.1 calls the agent needs (the lab's own
calls, built on these declarations, are bpffs_sync/measure/ffi.py).

Each foreign function is declared once with argtypes/restype and use_errno=True. A negative int
result raises LibbpfError with -ret as errno; a NULL pointer result raises with ctypes.get_errno().
Every error names the operation and the path (or object) it was about, and carries the last
message libbpf printed (often the verifier's verdict).

Struct layouts are the kernel UAPI's (include/uapi/linux/bpf.h); only the prefixes we read are
declared, which the kernel accepts (info_len may be shorter than the kernel's struct).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_mod
import os
import platform
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from ctypes import (
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_int,
    c_long,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from bpffs_sync import series
from bpffs_sync.errors import KernelUnsupported, LibbpfError

# --- globals -------------------------------------------------------------------------------------
# Stable UAPI (include/uapi/linux/bpf.h of every kernel we run on; tests/test_btf.py checks each
# against the running kernel's BTF). The kernel series' numbers are not here: series.uapi() reads them.

BPF_LINK_TYPE_ITER = 4
BPF_CGROUP_ITER_SELF_ONLY = 1
BPF_CGROUP_ITER_DESCENDANTS_PRE = 2
BPF_TRACE_ITER = 28
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_LINK_CREATE = 28
BPF_F_PATH_FD = 1 << 14  # path_fd is a directory fd, pathname relative to it (Linux 6.5)
BPF_F_SLEEPABLE = 1 << 4  # prog_flags: the program may sleep (a #define of uapi/linux/bpf.h, not in BTF)
BPF_FS_MAGIC = 0xCAFE4A11
BPF_OBJ_NAME_LEN = 16
# __NR_bpf by platform.machine(): arch/x86/entry/syscalls/syscall_{64,32}.tbl,
# arch/arm/tools/syscall.tbl, arch/powerpc/kernel/syscalls/syscall.tbl, arch/s390/.../syscall.tbl,
# and include/uapi/asm-generic/unistd.h (280) for the architectures using the generic table.
SYSCALL_BPF: dict[str, int] = {
    "x86_64": 321, "amd64": 321, "i386": 357, "i686": 357,
    "aarch64": 280, "arm64": 280, "riscv64": 280, "loongarch64": 280,
    "armv7l": 386, "armv6l": 386, "armv8l": 386,
    "ppc64le": 361, "ppc64": 361, "s390x": 351,
}
T = TypeVar("T")


def nr_bpf(machine: str | None = None) -> int:
    """__NR_bpf on this machine (or on `machine`); KernelUnsupported names an architecture we have no number for."""
    arch = platform.machine() if machine is None else machine
    try:
        return SYSCALL_BPF[arch]
    except KeyError:
        raise KernelUnsupported("bpf(2)", arch or "unknown machine", 0,
                                f"no bpf syscall number known for this architecture (known: "
                                f"{', '.join(sorted(SYSCALL_BPF))}); add it to libbpf.SYSCALL_BPF") from None


_lib: ctypes.CDLL | None
_LOAD_ERROR: OSError | None = None
try:
    _lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    _libc: ctypes.CDLL | None = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError as err:  # pragma: no cover - exercised only on a host without libbpf
    _lib = _libc = None
    _LOAD_ERROR = err


def available() -> bool:
    """True when libbpf.so.1 could be loaded."""
    return _lib is not None


# --- structs -------------------------------------------------------------------------------------


class IterLinkInfoCgroup(Structure):
    """union bpf_iter_link_info, cgroup member (16 bytes)."""

    _fields_ = (("order", c_uint32), ("cgroup_fd", c_uint32), ("cgroup_id", c_uint64))


class LinkCreateIter(Structure):
    """union bpf_attr, link_create for an iterator: iter_info points at a bpf_iter_link_info."""

    _fields_ = (("prog_fd", c_uint32), ("target_fd", c_uint32), ("attach_type", c_uint32), ("flags", c_uint32),
                ("iter_info", c_uint64), ("iter_info_len", c_uint32), ("pad", c_uint32))


class LinkInfo(Structure):
    """struct bpf_link_info, up to the iter member's cgroup fields (48 bytes)."""

    _fields_ = (
        ("type", c_uint32),
        ("id", c_uint32),
        ("prog_id", c_uint32),
        ("_pad", c_uint32),
        ("iter_target_name", c_uint64),
        ("iter_target_name_len", c_uint32),
        ("iter_map_id", c_uint32),
        ("iter_cgroup_id", c_uint64),
        ("iter_cgroup_order", c_uint32),
        ("_pad2", c_uint32),
    )


class CgroupStatLinkInfo(Structure):
    """struct bpf_link_info, cgroup_stat member, with flags (Approach 2's, and Approach 1's from its
    13/15: the link-create flags) and Approach 2's hierarchy_id (56 bytes; a kernel with Approach 1
    alone copies its 52, or 48 before 13/15, and leaves the rest 0)."""

    _fields_ = (
        ("type", c_uint32),
        ("id", c_uint32),
        ("prog_id", c_uint32),
        ("_pad", c_uint32),
        ("cgroup_id", c_uint64),
        ("name", c_uint64),
        ("name_len", c_uint32),
        ("nr_files", c_uint32),
        ("nr_errors", c_uint32),
        ("mirrored", c_uint32),
        ("flags", c_uint32),
        ("hierarchy_id", c_uint32),
    )


class LinkCreateCgroupStat(Structure):
    """union bpf_attr, link_create with its cgroup_stat member (32 bytes)."""

    _fields_ = (
        ("prog_fd", c_uint32),
        ("cgroup_root", c_uint32),
        ("attach_type", c_uint32),
        ("flags", c_uint32),
        ("name", c_uint64),
        ("name_len", c_uint32),
        ("name_flags", c_uint32),
    )


class ProgInfo(Structure):
    """struct bpf_prog_info, up to name (80 bytes)."""

    _fields_ = (
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", c_uint8 * 8),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
        ("name", c_char * BPF_OBJ_NAME_LEN),
    )


class MapInfo(Structure):
    """struct bpf_map_info, up to name (40 bytes)."""

    _fields_ = (
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", c_char * BPF_OBJ_NAME_LEN),
    )


# --- libbpf's own log ----------------------------------------------------------------------------

# libbpf_print_fn_t: int (*)(enum libbpf_print_level, const char *fmt, va_list)
_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_log_lock = threading.Lock()
_recent: deque[str] = deque(maxlen=40)


def _on_libbpf_print(level: int, fmt: bytes | None, args: int | None) -> int:
    buf = ctypes.create_string_buffer(1024)
    _vsnprintf(buf, len(buf), fmt, args)
    line = buf.value.decode(errors="replace").rstrip("\n")
    if line:
        with _log_lock:
            _recent.append(line)
    return 0


_print_cb = _PRINT_FN(_on_libbpf_print)


def _last_messages(limit: int = 6) -> str:
    with _log_lock:
        lines = [line for line in _recent if line.strip()][-limit:]
        _recent.clear()
    return " | ".join(lines)


def _clear_messages() -> None:
    with _log_lock:
        _recent.clear()


# --- foreign functions ---------------------------------------------------------------------------
# Each declared once: a prototype (restype, argtypes, use_errno=True) bound to its symbol, and a
# Python signature mypy checks every call against. Pointers to libbpf's opaque objects are ints
# (c_void_p); a NULL result is None. A missing libbpf.so.1 makes each call raise LibbpfError.

if TYPE_CHECKING:
    from _ctypes import _CArgObject as ByRef  # what ctypes.byref() returns
else:
    ByRef = object
Buffer = ctypes.Array[c_char]  # ctypes.create_string_buffer()


def _fn(lib: ctypes.CDLL | None, name: str, restype: type[Any] | None, *argtypes: type[Any]) -> Callable[..., Any]:
    """The foreign function `name` of lib, with its prototype; errno is captured (use_errno=True).
    Without the library, a stand-in that raises LibbpfError (dlopen) when called."""
    if lib is None:
        def missing(*args: object) -> NoReturn:
            raise LibbpfError("dlopen", "libbpf.so.1", errno_mod.ENOENT, str(_LOAD_ERROR))
        return missing
    proto = ctypes.CFUNCTYPE(restype, *argtypes, use_errno=True)
    return proto((name, lib))


# libc
_vsnprintf: Callable[[Buffer, int, bytes | None, int | None], int] = _fn(
    _libc, "vsnprintf", c_int, c_char_p, c_size_t, c_char_p, c_void_p)
_syscall: Callable[[int, int, ByRef, int], int] = _fn(_libc, "syscall", c_long, c_long, c_int, c_void_p, c_uint32)
_fstatfs: Callable[[int, Buffer], int] = _fn(_libc, "fstatfs", c_int, c_int, c_void_p)
# libbpf: its log
_set_print: Callable[[object], int | None] = _fn(_lib, "libbpf_set_print", c_void_p, _PRINT_FN)
# libbpf: objects, programs, maps (pointers to struct bpf_object / bpf_program / bpf_map / bpf_link)
_obj_open_file: Callable[[bytes, int | None], int | None] = _fn(
    _lib, "bpf_object__open_file", c_void_p, c_char_p, c_void_p)
_obj_load: Callable[[int], int] = _fn(_lib, "bpf_object__load", c_int, c_void_p)
_obj_close: Callable[[int], None] = _fn(_lib, "bpf_object__close", None, c_void_p)
_obj_find_map: Callable[[int, bytes], int | None] = _fn(_lib, "bpf_object__find_map_by_name", c_void_p, c_void_p,
                                                        c_char_p)
_obj_find_prog: Callable[[int, bytes], int | None] = _fn(_lib, "bpf_object__find_program_by_name", c_void_p,
                                                         c_void_p, c_char_p)
_map_set_pin_path: Callable[[int, bytes], int] = _fn(_lib, "bpf_map__set_pin_path", c_int, c_void_p, c_char_p)
_map_set_max_entries: Callable[[int, int], int] = _fn(_lib, "bpf_map__set_max_entries", c_int, c_void_p, c_uint32)
_map_fd: Callable[[int], int] = _fn(_lib, "bpf_map__fd", c_int, c_void_p)
_prog_set_autoload: Callable[[int, bool], int] = _fn(_lib, "bpf_program__set_autoload", c_int, c_void_p, c_bool)
_prog_set_type: Callable[[int, int], int] = _fn(_lib, "bpf_program__set_type", c_int, c_void_p, c_int)
_prog_set_expected_attach_type: Callable[[int, int], int] = _fn(
    _lib, "bpf_program__set_expected_attach_type", c_int, c_void_p, c_int)
_prog_fd: Callable[[int], int] = _fn(_lib, "bpf_program__fd", c_int, c_void_p)
_prog_section_name: Callable[[int], bytes | None] = _fn(_lib, "bpf_program__section_name", c_char_p, c_void_p)
_prog_flags: Callable[[int], int] = _fn(_lib, "bpf_program__flags", c_uint32, c_void_p)
_prog_set_flags: Callable[[int, int], int] = _fn(_lib, "bpf_program__set_flags", c_int, c_void_p, c_uint32)
_prog_attach: Callable[[int], int | None] = _fn(_lib, "bpf_program__attach", c_void_p, c_void_p)
_link_pin: Callable[[int, bytes], int] = _fn(_lib, "bpf_link__pin", c_int, c_void_p, c_char_p)
_link_destroy: Callable[[int], int] = _fn(_lib, "bpf_link__destroy", c_int, c_void_p)
_link_fd: Callable[[int], int] = _fn(_lib, "bpf_link__fd", c_int, c_void_p)
# libbpf: bpf(2) wrappers on fds and ids
_link_detach: Callable[[int], int] = _fn(_lib, "bpf_link_detach", c_int, c_int)
_link_update: Callable[[int, int, int | None], int] = _fn(_lib, "bpf_link_update", c_int, c_int, c_int, c_void_p)
_link_get_fd_by_id: Callable[[int], int] = _fn(_lib, "bpf_link_get_fd_by_id", c_int, c_uint32)
_link_get_next_id: Callable[[int, ByRef], int] = _fn(_lib, "bpf_link_get_next_id", c_int, c_uint32,
                                                     POINTER(c_uint32))
_iter_create: Callable[[int], int] = _fn(_lib, "bpf_iter_create", c_int, c_int)
_obj_get: Callable[[bytes], int] = _fn(_lib, "bpf_obj_get", c_int, c_char_p)
_obj_pin: Callable[[int, bytes], int] = _fn(_lib, "bpf_obj_pin", c_int, c_int, c_char_p)
_obj_get_info: Callable[[int, ByRef, ByRef], int] = _fn(_lib, "bpf_obj_get_info_by_fd", c_int, c_int, c_void_p,
                                                        POINTER(c_uint32))
_prog_get_fd_by_id: Callable[[int], int] = _fn(_lib, "bpf_prog_get_fd_by_id", c_int, c_uint32)
_map_delete: Callable[[int, Buffer], int] = _fn(_lib, "bpf_map_delete_elem", c_int, c_int, c_void_p)
_map_next_key: Callable[[int, Buffer | None, Buffer], int] = _fn(_lib, "bpf_map_get_next_key", c_int, c_int,
                                                                 c_void_p, c_void_p)
if _lib is not None:
    _set_print(_print_cb)


def sys_bpf(cmd: int, attr: ByRef, size: int, op: str, what: str) -> int:
    """One raw bpf(2) call (the calls whose attr an installed libbpf may not know, and the hot
    per-cgroup link create); a negative result raises LibbpfError with errno."""
    ctypes.set_errno(0)
    ret = _syscall(nr_bpf(), cmd, attr, size)
    if ret < 0:
        raise LibbpfError(op, what, ctypes.get_errno() or errno_mod.EINVAL, "")
    return ret


# --- error helpers -------------------------------------------------------------------------------


def _check_int(ret: int, op: str, what: str) -> int:
    if ret < 0:
        err = -ret if ret != -1 else (ctypes.get_errno() or errno_mod.EINVAL)
        raise LibbpfError(op, what, err, _last_messages())
    return ret


def _check_ptr(ptr: int | None, op: str, what: str) -> int:
    if not ptr:
        raise LibbpfError(op, what, ctypes.get_errno() or errno_mod.EINVAL, _last_messages())
    return ptr


def _b(path: str) -> bytes:
    return os.fsencode(path)


# --- objects -------------------------------------------------------------------------------------


class BpfObject:
    """An opened (and, after load(), loaded) BPF object file. Close it, or use it as a context."""

    def __init__(self, path: str) -> None:
        self.path = path
        _clear_messages()
        ctypes.set_errno(0)
        self._obj: int | None = _check_ptr(_obj_open_file(_b(path), None), "bpf_object__open_file", path)

    def _handle(self) -> int:
        if self._obj is None:
            raise LibbpfError("use", self.path, errno_mod.EBADF, "object closed")
        return self._obj

    def set_map_pin_path(self, map_name: str, pin_path: str) -> None:
        m = _check_ptr(_obj_find_map(self._handle(), map_name.encode()), "find_map", map_name)
        _check_int(_map_set_pin_path(m, _b(pin_path)), "bpf_map__set_pin_path", pin_path)

    def set_map_max_entries(self, map_name: str, entries: int) -> None:
        """Before load(): a map's size (a ring buffer's bytes: a power of two, page aligned)."""
        m = _check_ptr(_obj_find_map(self._handle(), map_name.encode()), "find_map", map_name)
        _check_int(_map_set_max_entries(m, entries), "bpf_map__set_max_entries", map_name)

    def map_fd(self, map_name: str) -> int:
        m = _check_ptr(_obj_find_map(self._handle(), map_name.encode()), "find_map", map_name)
        return _check_int(_map_fd(m), "bpf_map__fd", map_name)

    def program(self, name: str) -> BpfProgram:
        ctypes.set_errno(0)
        p = _check_ptr(_obj_find_prog(self._handle(), name.encode()), "bpf_object__find_program_by_name",
                       f"{self.path}:{name}")
        return BpfProgram(self, name, p)

    def load(self) -> None:
        _clear_messages()
        _check_int(_obj_load(self._handle()), "bpf_object__load", self.path)

    @property
    def closed(self) -> bool:
        return self._obj is None

    def close(self) -> None:
        if self._obj is not None:
            _obj_close(self._obj)
            self._obj = None

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BpfProgram:
    """A program inside a BpfObject (borrowed: valid while the object is open)."""

    def __init__(self, obj: BpfObject, name: str, handle: int) -> None:
        self.obj = obj
        self.name = name
        self._p = handle

    @property
    def handle(self) -> int:
        """The struct bpf_program pointer, for a libbpf call not bound here (the lab's: measure/ffi.py)."""
        return self._p

    def set_autoload(self, autoload: bool) -> None:
        _check_int(_prog_set_autoload(self._p, autoload), "bpf_program__set_autoload", self.name)

    def set_cgroup_stat(self) -> None:
        """Load as BPF_PROG_TYPE_CGROUP_STAT (its number read from the kernel's BTF: series.uapi()):
        a libbpf older than the series has no SEC("cgroup/stat")."""
        uapi = series.uapi()
        _check_int(_prog_set_type(self._p, uapi.prog_type), "bpf_program__set_type", self.name)
        _check_int(_prog_set_expected_attach_type(self._p, uapi.attach_type),
                   "bpf_program__set_expected_attach_type", self.name)

    def section_name(self) -> str:
        """The program's ELF section (SEC("...")), e.g. iter.s/cgroup."""
        raw = _prog_section_name(self._p)
        return raw.decode() if raw else ""

    def flags(self) -> int:
        """The prog_flags the load will pass (libbpf's from the section, and any set_flags())."""
        return int(_prog_flags(self._p))

    def set_flags(self, flags: int) -> None:
        """Before load: the prog_flags (BPF_F_SLEEPABLE...)."""
        _check_int(_prog_set_flags(self._p, flags), "bpf_program__set_flags", self.name)

    def fd(self) -> int:
        """The loaded program's fd (owned by the object)."""
        return _check_int(_prog_fd(self._p), "bpf_program__fd", self.name)

    def attach(self) -> BpfLink:
        """Attach by section (tp_btf/raw_tp collectors)."""
        _clear_messages()
        ctypes.set_errno(0)
        return BpfLink(_check_ptr(_prog_attach(self._p), "bpf_program__attach", self.name))

    def link_cgroup_iter(self, cgroup_fd: int, what: str, order: int = BPF_CGROUP_ITER_SELF_ONLY) -> int:
        """BPF_LINK_CREATE of a cgroup iterator (SELF_ONLY unless `order` says otherwise) for the
        cgroup open at cgroup_fd, as one raw bpf(2) call (the per-cgroup hot path of a first
        pass); returns the link fd."""
        info = IterLinkInfoCgroup(order=order, cgroup_fd=cgroup_fd, cgroup_id=0)
        attr = LinkCreateIter(prog_fd=self.fd(), attach_type=BPF_TRACE_ITER, iter_info=ctypes.addressof(info),
                              iter_info_len=ctypes.sizeof(info))
        return sys_bpf(BPF_LINK_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), "BPF_LINK_CREATE iter/cgroup", what)


class BpfLink:
    """A libbpf bpf_link; destroy() closes our fd (a pin keeps the link alive)."""

    def __init__(self, handle: int) -> None:
        self._l: int | None = handle

    def pin(self, path: str) -> None:
        if self._l is None:
            raise LibbpfError("bpf_link__pin", path, errno_mod.EBADF, "link destroyed")
        _check_int(_link_pin(self._l, _b(path)), "bpf_link__pin", path)

    def fd(self, what: str = "link") -> int:
        """The link's fd (owned by the link: destroy() closes it)."""
        if self._l is None:
            raise LibbpfError("bpf_link__fd", what, errno_mod.EBADF, "link destroyed")
        return _check_int(_link_fd(self._l), "bpf_link__fd", what)

    def pin_at(self, dir_fd: int, name: str, what: str) -> None:
        """Pin as `name` in the directory open at dir_fd (no path walk: BPF_F_PATH_FD)."""
        if self._l is None:
            raise LibbpfError("bpf_obj_pin", what, errno_mod.EBADF, "link destroyed")
        obj_pin_at(self.fd(what), dir_fd, name, what)

    def destroy(self) -> None:
        if self._l is not None:
            _link_destroy(self._l)
            self._l = None

    def __enter__(self) -> BpfLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


# --- raw fds: pins, info, maps -------------------------------------------------------------------


def iter_create(link_fd: int, what: str) -> int:
    """A new iterator session (an fd to read) of the iterator link link_fd."""
    ctypes.set_errno(0)
    return _check_int(_iter_create(link_fd), "bpf_iter_create", what)


def obj_get(path: str) -> int:
    """Open the object pinned at path; returns an fd the caller closes."""
    ctypes.set_errno(0)
    return _check_int(_obj_get(_b(path)), "bpf_obj_get", path)


def obj_pin(fd: int, path: str) -> None:
    _check_int(_obj_pin(fd, _b(path)), "bpf_obj_pin", path)


class _ObjAttr(Structure):
    """bpf_attr for BPF_OBJ_PIN / BPF_OBJ_GET with path_fd (include/uapi/linux/bpf.h)."""

    _fields_ = (("pathname", c_uint64), ("bpf_fd", c_uint32), ("file_flags", c_uint32), ("path_fd", c_int))


def _obj_at(cmd: int, fd: int, dir_fd: int, name: str, *, op: str, what: str) -> int:
    """One BPF_OBJ_PIN/GET relative to dir_fd. `name` is one component: no '/' (so no walk at all)."""
    raw = os.fsencode(name)
    if not raw or b"/" in raw or raw in (b".", b".."):
        raise LibbpfError(op, what, errno_mod.EINVAL, "not a single path component")
    buf = ctypes.create_string_buffer(raw)
    attr = _ObjAttr(pathname=ctypes.addressof(buf), bpf_fd=fd, file_flags=BPF_F_PATH_FD, path_fd=dir_fd)
    return sys_bpf(cmd, ctypes.byref(attr), ctypes.sizeof(attr), op, what)


def obj_pin_at(fd: int, dir_fd: int, name: str, what: str) -> None:
    """Pin the object at fd as `name` in the directory open at dir_fd. BPF_OBJ_PIN never follows
    a symlink at the last component (it creates), and there is no other component."""
    _obj_at(BPF_OBJ_PIN, fd, dir_fd, name, op="bpf_obj_pin", what=what)


def obj_get_at(dir_fd: int, name: str, what: str) -> int:
    """Open the object pinned as `name` in the directory open at dir_fd; returns an fd. BPF_OBJ_GET
    follows a symlink at the last component: callers lstat the name first (bpffs.describe_at)."""
    return _obj_at(BPF_OBJ_GET, 0, dir_fd, name, op="bpf_obj_get", what=what)


def fs_magic(fd: int) -> int:
    """f_type of the filesystem holding fd (fstatfs(2)); BPF_FS_MAGIC for bpffs."""
    buf = ctypes.create_string_buffer(120)  # struct statfs: f_type is the first long
    if _fstatfs(fd, buf) != 0:
        err = ctypes.get_errno()
        raise LibbpfError("fstatfs", f"fd {fd}", err, os.strerror(err))
    return int(ctypes.c_long.from_buffer(buf).value) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class LinkDesc:
    """What a link fd says about itself."""

    link_id: int
    link_type: int
    prog_id: int
    cgroup_id: int  # iterator links only; 0 otherwise
    order: int


@dataclass(frozen=True, slots=True)
class ProgDesc:
    prog_id: int
    name: str
    map_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MapDesc:
    map_id: int
    name: str
    key_size: int
    value_size: int
    max_entries: int


def _get_info(fd: int, info: Structure, what: str) -> None:
    size = c_uint32(ctypes.sizeof(info))
    _check_int(_obj_get_info(fd, ctypes.byref(info), ctypes.byref(size)), "bpf_obj_get_info_by_fd", what)


def link_info(fd: int, what: str = "link") -> LinkDesc:
    info = LinkInfo()
    _get_info(fd, info, what)
    iter_cgroup = info.type == BPF_LINK_TYPE_ITER
    return LinkDesc(
        link_id=info.id,
        link_type=info.type,
        prog_id=info.prog_id,
        cgroup_id=info.iter_cgroup_id if iter_cgroup else 0,
        order=info.iter_cgroup_order if iter_cgroup else 0,
    )


def map_info(fd: int, what: str = "map") -> MapDesc:
    info = MapInfo()
    _get_info(fd, info, what)
    return MapDesc(
        map_id=info.id,
        name=info.name.decode(errors="replace"),
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
    )


def prog_info(fd: int, what: str = "prog") -> ProgDesc:
    info = ProgInfo()
    _get_info(fd, info, what)
    n = info.nr_map_ids
    if n:
        ids = (c_uint32 * n)()
        info = ProgInfo(nr_map_ids=n, map_ids=ctypes.addressof(ids))
        _get_info(fd, info, what)
        map_ids = tuple(ids[: min(n, info.nr_map_ids)])
    else:
        map_ids = ()
    return ProgDesc(prog_id=info.id, name=info.name.decode(errors="replace"), map_ids=map_ids)


def prog_info_by_id(prog_id: int) -> ProgDesc:
    ctypes.set_errno(0)
    fd = _check_int(_prog_get_fd_by_id(prog_id), "bpf_prog_get_fd_by_id", f"prog id {prog_id}")
    try:
        return prog_info(fd, f"prog id {prog_id}")
    finally:
        os.close(fd)


def map_delete(fd: int, key: bytes, what: str = "map") -> bool:
    """Delete key; False when it was already absent."""
    k = ctypes.create_string_buffer(key, len(key))
    ret = _map_delete(fd, k)
    if ret < 0:
        err = -ret if ret != -1 else ctypes.get_errno()
        if err == errno_mod.ENOENT:
            return False
        raise LibbpfError("bpf_map_delete_elem", what, err, "")
    return True


def map_keys(fd: int, key_size: int, what: str = "map") -> Iterator[bytes]:
    """Iterate the keys of a hash map (a snapshot-ish walk; concurrent deletes may restart it)."""
    cur: ctypes.Array[ctypes.c_char] | None = None
    nxt = ctypes.create_string_buffer(key_size)
    while True:
        ret = _map_next_key(fd, cur, nxt)
        if ret < 0:
            err = -ret if ret != -1 else ctypes.get_errno()
            if err == errno_mod.ENOENT:
                return
            raise LibbpfError("bpf_map_get_next_key", what, err, "")
        key = nxt.raw
        yield key
        cur = ctypes.create_string_buffer(key, key_size)


# --- cgroup stat links (the patched kernel of kernel-approach1/) ---------------------------------


@dataclass(frozen=True, slots=True)
class CgroupStatLinkDesc:
    """What a cgroup stat link says about itself (bpf_link_info.cgroup_stat, and its fdinfo for the
    hierarchy: Approach 1 has no hierarchy_id in its link info)."""

    link_id: int
    prog_id: int
    cgroup_id: int  # the link's cgroup_root (unique within its hierarchy only); 0 once detached
    name: str  # file name in each cgroup's directory
    nr_files: int
    nr_errors: int
    hierarchy_id: int = 0  # the root's hierarchy (fdinfo): 0 is the default (v2) one, and once detached
    flags: int = 0  # link_create.cgroup_stat.flags (bpf_link_info, 13/15 on): with the write flag, files take writes


@dataclass(frozen=True, slots=True)
class LinkFdinfo:
    """The cgroup stat link's lines of /proc/<pid>/fdinfo/<fd> (either series prints them):

        cgroup_id:\t<root's id, 0 once detached>
        hierarchy_id:\t<root's hierarchy, 0: the default one and once detached>
        name:\t<file name>
        nr_files:\t<n>
        nr_errors:\t<n>

    An image built before Approach 1's patch 9 has no hierarchy_id line: its links can be rooted
    on the default hierarchy only, so the absent line means 0, and hierarchy_reported says so. (13/15
    adds a `flags:` line, which repeats a key of the generic lines: the link's flags are read from
    bpf_link_info instead.)"""

    cgroup_id: int
    hierarchy_id: int
    name: str
    nr_files: int
    nr_errors: int
    hierarchy_reported: bool  # False: no hierarchy_id line (a kernel before v1 support): 0 assumed


_FDINFO_INTS = ("cgroup_id", "nr_files", "nr_errors")


def parse_link_fdinfo(text: str, what: str = "link") -> LinkFdinfo:
    """The cgroup stat link fields of an fdinfo text (pure). Fields are `key:<TAB>value` lines; the
    generic ones (pos, flags, link_type, prog_id...) are skipped. A missing cgroup_id, name,
    nr_files or nr_errors, or a number that is not one, is a LibbpfError naming `what`: not a
    cgroup stat link's fdinfo (or a format this code does not know)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key not in fields:
            fields[key] = value.strip("\t ")
    missing = [k for k in (*_FDINFO_INTS, "name") if k not in fields]
    if missing:
        raise LibbpfError("fdinfo", what, errno_mod.EINVAL, f"no {', '.join(missing)} line: not a cgroup stat link")
    wanted = {k: fields[k] for k in _FDINFO_INTS}
    reported = "hierarchy_id" in fields
    if reported:
        wanted["hierarchy_id"] = fields["hierarchy_id"]
    bad = [f"{k}: {v!r}" for k, v in wanted.items() if not v.isdigit()]
    if bad:
        raise LibbpfError("fdinfo", what, errno_mod.EINVAL, f"not a number: {'; '.join(bad)}")
    return LinkFdinfo(cgroup_id=int(wanted["cgroup_id"]), hierarchy_id=int(wanted.get("hierarchy_id", "0")),
                      name=fields["name"], nr_files=int(wanted["nr_files"]), nr_errors=int(wanted["nr_errors"]),
                      hierarchy_reported=reported)


def link_fdinfo(fd: int, what: str = "link") -> LinkFdinfo:
    """parse_link_fdinfo() of this process's fdinfo of the cgroup stat link at fd."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as err:
        raise LibbpfError("read fdinfo", what, err.errno or 0, os.strerror(err.errno or 0)) from err
    return parse_link_fdinfo(text, what)


# The most bytes one write(2) to a writable cgroup stat file hands its program, -E2BIG beyond (kernel-approach1
# 13/15's BPF_CGROUP_STAT_WRITE_MAX): for messages only, nothing is sized by it.
BPF_CGROUP_STAT_WRITE_MAX = 256


def link_create_cgroup_stat(prog_fd: int, cgroup_fd: int, name: str | None = None, cgroupfs: bool = False,
                            flags: int = 0) -> int:
    """BPF_LINK_CREATE of a cgroup stat link at the cgroup open at cgroup_fd; returns the link fd.
    cgroupfs: Approach 2's files in cgroupfs (BPF_F_CGROUP_STAT_CGROUPFS), else Approach 1's mirror.
    flags: more link_create.cgroup_stat.flags, this kernel's numbers (series.uapi().write_flag: the
    files take writes). The numbers (attach type, cgroupfs flag) are this kernel's (series.uapi()).

    A raw bpf(2) call: the link's optional file name needs the series' bpf_attr layout, which an
    installed libbpf may predate.
    """
    uapi = series.uapi()
    if cgroupfs:
        if uapi.cgroupfs_flag is None:
            raise KernelUnsupported("BPF_LINK_CREATE cgroup_stat cgroupfs", name or f"prog fd {prog_fd}", 0,
                                    f"the kernel's BTF has no {series.CGROUPFS_FLAG} (no kernel-approach2 series)")
        flags |= uapi.cgroupfs_flag
    raw = os.fsencode(name) if name is not None else b""
    buf = ctypes.create_string_buffer(raw, len(raw) + 1)
    attr = LinkCreateCgroupStat(
        prog_fd=prog_fd,
        cgroup_root=cgroup_fd,
        attach_type=uapi.attach_type,
        name=ctypes.addressof(buf) if name is not None else 0,
        name_len=len(raw),
        name_flags=flags,
    )
    op = "BPF_LINK_CREATE cgroup_stat" + (" cgroupfs" if cgroupfs else "") + (f" flags {flags:#x}" if flags else "")
    return sys_bpf(BPF_LINK_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), op, name or f"prog fd {prog_fd}")


def _link_fd_if_alive(link_id: int) -> int | None:
    """An fd of the link with this id; None once it is gone (links vanish between listing and opening)
    or while its id is not usable: EAGAIN from a link being released (its id is freed before its
    release runs, which may be in a workqueue) or not yet settled by its creator."""
    try:
        return link_fd_by_id(link_id)
    except LibbpfError as err:
        if err.errno in (errno_mod.ENOENT, errno_mod.EAGAIN):
            return None
        raise


def detach_links(ids: Iterable[int]) -> int:
    """BPF_LINK_DETACH each link id (gone ones skipped); returns how many were detached."""
    done = 0
    for link_id in ids:
        if (fd := _link_fd_if_alive(link_id)) is None:
            continue
        try:
            link_detach(fd, f"link id {link_id}")
            done += 1
        finally:
            os.close(fd)
    return done


def _cgroup_stat_info(fd: int, what: str) -> tuple[CgroupStatLinkInfo, str] | None:
    """bpf_link_info of a cgroup stat link (either series) and its file name; None for any other link
    (every link, on a kernel with neither series)."""
    uapi = series.carried().uapi
    if uapi is None:
        return None
    probe = LinkInfo()  # no pointers in: other link types read the union differently
    _get_info(fd, probe, what)
    if probe.type != uapi.link_type:
        return None
    name = ctypes.create_string_buffer(256)
    info = CgroupStatLinkInfo(name=ctypes.addressof(name), name_len=len(name))
    _get_info(fd, info, what)
    return info, os.fsdecode(name.value)


def _cgroupfs(info: CgroupStatLinkInfo) -> bool:
    """Was the link made with BPF_F_CGROUP_STAT_CGROUPFS (Approach 2)?"""
    flag = series.carried().uapi
    return flag is not None and flag.cgroupfs_flag is not None and bool(info.flags & flag.cgroupfs_flag)


def cgroup_stat_link_info(fd: int, what: str = "link") -> CgroupStatLinkDesc | None:
    """The Approach 1 view of the link at fd; None for any other link (Approach 2's included: the
    same link type, told apart by BPF_F_CGROUP_STAT_CGROUPFS)."""
    found = _cgroup_stat_info(fd, what)
    if found is None or _cgroupfs(found[0]):
        return None
    info, name = found
    # The root and its hierarchy from one read of fdinfo (Approach 1's link info has no hierarchy,
    # and a v1 root's cgroup id names a cgroup only with it); a detach meanwhile shows as 0 in both.
    fdinfo = link_fdinfo(fd, what)
    return CgroupStatLinkDesc(link_id=info.id, prog_id=info.prog_id, cgroup_id=fdinfo.cgroup_id, name=name,
                              nr_files=fdinfo.nr_files, nr_errors=fdinfo.nr_errors,
                              hierarchy_id=fdinfo.hierarchy_id, flags=info.flags)


def _links_where(view: Callable[[int, str], T | None]) -> list[T]:
    """view() of every link in the system it recognises (links that vanish mid-walk are skipped)."""
    found = []
    for link_id in link_ids():
        if (fd := _link_fd_if_alive(link_id)) is None:
            continue
        try:
            desc = view(fd, f"link id {link_id}")
        finally:
            os.close(fd)
        if desc is not None:
            found.append(desc)
    return found


def link_ids() -> Iterator[int]:
    """Ids of every BPF link in the system."""
    cur = c_uint32(0)
    nxt = c_uint32(0)
    while _link_get_next_id(cur.value, ctypes.byref(nxt)) == 0:
        yield nxt.value
        cur.value = nxt.value


def link_fd_by_id(link_id: int) -> int:
    """Open link link_id; returns an fd the caller closes."""
    ctypes.set_errno(0)
    return _check_int(_link_get_fd_by_id(link_id), "bpf_link_get_fd_by_id", f"link id {link_id}")


def link_detach(fd: int, what: str = "link") -> None:
    """BPF_LINK_DETACH: for a cgroup stat link, remove every file it made."""
    _check_int(_link_detach(fd), "bpf_link_detach", what)


def link_update(fd: int, prog_fd: int, what: str = "link") -> None:
    """BPF_LINK_UPDATE: swap the link's program (a cgroup stat link keeps its files)."""
    _check_int(_link_update(fd, prog_fd, None), "bpf_link_update", what)


def cgroup_stat_links() -> list[CgroupStatLinkDesc]:
    """Every Approach 1 cgroup stat link in the system."""
    return _links_where(cgroup_stat_link_info)


# --- Approach 2: cgroup stat links whose files live in cgroupfs (kernel-approach2/) ---------------
# A cgroup stat link made with BPF_F_CGROUP_STAT_CGROUPFS puts `bpf.stat.<name>` in the cgroupfs
# directory of its root cgroup (v2 or v1) and of every descendant. Same prog, attach and link
# types as Approach 1; the link info grows `flags` and `hierarchy_id`.

CGROUPFS_STAT_PREFIX = "bpf.stat."


@dataclass(frozen=True, slots=True)
class CgroupfsStatLinkDesc:
    """What an Approach 2 cgroup stat link says about itself."""

    link_id: int
    prog_id: int
    cgroup_id: int  # the link's root cgroup (unique within its hierarchy); 0 once detached
    hierarchy_id: int  # 0: the v2 hierarchy (also 0 once detached)
    name: str  # the file name, `bpf.stat.<name>`
    nr_files: int
    nr_errors: int


def link_create_cgroupfs_stat(prog_fd: int, cgroup_fd: int, name: str | None = None) -> int:
    """BPF_LINK_CREATE of an Approach 2 link at the cgroup (v2 or v1) open at cgroup_fd; its files
    are `bpf.stat.<name>` (name defaults to the program's). Returns the link fd."""
    return link_create_cgroup_stat(prog_fd, cgroup_fd, name, cgroupfs=True)


def cgroupfs_stat_link_info(fd: int, what: str = "link") -> CgroupfsStatLinkDesc | None:
    """The Approach 2 view of the link at fd; None for any other link (Approach 1's included)."""
    found = _cgroup_stat_info(fd, what)
    if found is None or not _cgroupfs(found[0]):
        return None
    info, name = found
    return CgroupfsStatLinkDesc(link_id=info.id, prog_id=info.prog_id, cgroup_id=info.cgroup_id,
                                hierarchy_id=info.hierarchy_id, name=name, nr_files=info.nr_files,
                                nr_errors=info.nr_errors)


def cgroupfs_stat_links() -> list[CgroupfsStatLinkDesc]:
    """Every Approach 2 link in the system."""
    return _links_where(cgroupfs_stat_link_info)
