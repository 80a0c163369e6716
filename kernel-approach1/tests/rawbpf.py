"""Raw bpf(2), new-mount-API and namespace calls for the series' tests: hand-assembled programs
(to probe the verifier's helper set without a compiler), BPF tokens from a delegated bpffs, and
a child in a fresh user namespace. x86_64 syscall numbers; the series' bpf_attr layout."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Callable

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

NR_BPF = 321
NR_FSOPEN = 430
NR_FSCONFIG = 431
NR_FSMOUNT = 432
NR_FSPICK = 433
NR_MOVE_MOUNT = 429

BPF_PROG_LOAD = 5
BPF_LINK_CREATE = 28
BPF_TOKEN_CREATE = 36
BPF_PROG_TYPE_CGROUP_STAT = 33
BPF_CGROUP_STAT = 62
BPF_F_TOKEN_FD = 1 << 16

BPF_FUNC_get_smp_processor_id = 8
BPF_FUNC_probe_write_user = 36
BPF_FUNC_send_signal = 109
BPF_FUNC_send_signal_thread = 117

FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSCONFIG_CMD_RECONFIGURE = 7
FSPICK_EMPTY_PATH = 0x8
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000

_ATTR_SIZE = 168  # sizeof(union bpf_attr) in the series


def _bpf(cmd: int, attr: bytearray) -> int:
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    ctypes.set_errno(0)
    ret = int(_syscall(NR_BPF, cmd, buf, len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf cmd {cmd}: {os.strerror(err)}")
    return ret


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One struct bpf_insn."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def call_helper_prog(helper: int, arg1: int = 0) -> bytes:
    """r1 = arg1; r2 = 0; r3 = 0; call helper; r0 = 0; exit."""
    mov64_imm, call, exit_ = 0xB7, 0x85, 0x95
    return b"".join(
        (
            insn(mov64_imm, dst=1, imm=arg1),
            insn(mov64_imm, dst=2),
            insn(mov64_imm, dst=3),
            insn(call, imm=helper),
            insn(mov64_imm, dst=0),
            insn(exit_),
        )
    )


def prog_load_cgroup_stat(insns: bytes, token_fd: int | None = None, name: str = "cgstat_raw") -> tuple[int, str]:
    """BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_STAT program; returns (fd, verifier log).
    Raises OSError(errno, log) when the kernel refuses it."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into(
        "<IIQQIIQ",
        attr,
        0,
        BPF_PROG_TYPE_CGROUP_STAT,
        len(insns) // 8,
        ctypes.addressof(code),
        ctypes.addressof(lic),
        1,
        len(log),
        ctypes.addressof(log),
    )
    struct.pack_into("<I", attr, 44, BPF_F_TOKEN_FD if token_fd is not None else 0)
    struct.pack_into("<16s", attr, 48, name.encode()[:15])  # also the link's default file name
    struct.pack_into("<I", attr, 68, BPF_CGROUP_STAT)
    if token_fd is not None:
        struct.pack_into("<i", attr, 144, token_fd)
    try:
        fd = _bpf(BPF_PROG_LOAD, attr)
    except OSError as err:
        raise OSError(err.errno, log.value.decode(errors="replace")) from None
    return fd, log.value.decode(errors="replace")


def link_create_cgroup_stat(prog_fd: int, cgroup_fd: int) -> int:
    """BPF_LINK_CREATE of a cgroup stat link (the program's name as the file name)."""
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("<III", attr, 0, prog_fd, cgroup_fd, BPF_CGROUP_STAT)
    return _bpf(BPF_LINK_CREATE, attr)


def token_create(bpffs_fd: int) -> int:
    """BPF_TOKEN_CREATE from the root of a delegating bpffs."""
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("<II", attr, 0, 0, bpffs_fd)
    return _bpf(BPF_TOKEN_CREATE, attr)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    ctypes.set_errno(0)
    _check(_libc.unshare(flags), "unshare")


def fsopen(fstype: str) -> int:
    ctypes.set_errno(0)
    return _check(int(_syscall(NR_FSOPEN, fstype.encode(), 0)), f"fsopen {fstype}")


def fsconfig_string(fs_fd: int, key: str, value: str) -> None:
    ctypes.set_errno(0)
    _check(
        int(_syscall(NR_FSCONFIG, fs_fd, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0)),
        f"fsconfig {key}={value}",
    )


def fsconfig_flag(fs_fd: int, key: str) -> None:
    ctypes.set_errno(0)
    _check(int(_syscall(NR_FSCONFIG, fs_fd, FSCONFIG_SET_FLAG, key.encode(), None, 0)), f"fsconfig {key}")


def fsconfig_create(fs_fd: int) -> None:
    ctypes.set_errno(0)
    _check(int(_syscall(NR_FSCONFIG, fs_fd, FSCONFIG_CMD_CREATE, None, None, 0)), "fsconfig create")


def fspick(dir_fd: int) -> int:
    """A reconfiguration context of the mount dir_fd is the root of."""
    ctypes.set_errno(0)
    return _check(int(_syscall(NR_FSPICK, dir_fd, b"", FSPICK_EMPTY_PATH)), "fspick")


def fsconfig_reconfigure(fs_fd: int) -> None:
    ctypes.set_errno(0)
    _check(int(_syscall(NR_FSCONFIG, fs_fd, FSCONFIG_CMD_RECONFIGURE, None, None, 0)), "fsconfig reconfigure")


def fs_messages(fs_fd: int) -> str:
    """The messages the filesystem left in a context (one per read, until ENODATA)."""
    out = []
    while True:
        try:
            out.append(os.read(fs_fd, 4096).decode(errors="replace"))
        except OSError as err:
            if err.errno == errno.ENODATA:
                return "\n".join(out)
            raise


def move_mount(mnt_fd: int, target: str) -> None:
    ctypes.set_errno(0)
    _check(int(_syscall(NR_MOVE_MOUNT, mnt_fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH)),
           f"move_mount {target}")


def fsmount(fs_fd: int) -> int:
    ctypes.set_errno(0)
    return _check(int(_syscall(NR_FSMOUNT, fs_fd, 0, 0)), "fsmount")


def delegating_bpffs(fs_fd: int) -> int:
    """As init-namespace root: make the bpffs context fs_fd (opened in a user namespace) delegate
    every command, map, program and attach type, and return a detached mount of it."""
    for key in ("delegate_cmds", "delegate_maps", "delegate_progs", "delegate_attachs"):
        fsconfig_string(fs_fd, key, "any")
    fsconfig_create(fs_fd)
    return fsmount(fs_fd)


def in_userns_with_token(body: Callable[[int], int]) -> int:
    """Fork a child into a new user (uid 0 -> 0) and mount namespace, give it a BPF token made from
    a bpffs that delegates everything, run body(token_fd) there and return its result (an errno or
    0; a failure of the set-up itself is raised here)."""
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 100
        try:
            parent_sock.close()
            unshare(CLONE_NEWUSER)
            child_sock.sendall(b"u")
            if child_sock.recv(1) != b"m":
                os._exit(101)
            unshare(CLONE_NEWNS)
            fs_fd = fsopen("bpf")
            socket.send_fds(child_sock, [b"f"], [fs_fd])
            _msg, fds, _flags, _addr = socket.recv_fds(child_sock, 1, 1)
            # fsmount() gives an O_PATH fd, which bpf() does not take: open the mount's root
            token = token_create(os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[0]))
            result = body(token)
            child_sock.sendall(struct.pack("<i", result))
            code = 0
        except BaseException as err:  # any set-up failure goes to the parent
            child_sock.sendall(struct.pack("<i", -1) + repr(err).encode()[:200])
        finally:
            os._exit(code)
    child_sock.close()
    try:
        assert parent_sock.recv(1) == b"u"
        for name, line in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
            with open(f"/proc/{pid}/{name}", "w", encoding="ascii") as f:
                f.write(line)
        parent_sock.sendall(b"m")
        _msg, fds, _flags, _addr = socket.recv_fds(parent_sock, 1, 1)
        assert fds, "the child sent no bpffs context"
        mnt_fd = delegating_bpffs(fds[0])
        socket.send_fds(parent_sock, [b"m"], [mnt_fd])
        os.close(mnt_fd)
        os.close(fds[0])
        reply = b""
        while chunk := parent_sock.recv(4096):
            reply += chunk
    finally:
        parent_sock.close()
        os.waitpid(pid, 0)
    result = struct.unpack_from("<i", reply)[0] if len(reply) >= 4 else -1
    if result < 0:
        raise RuntimeError(f"user namespace child failed: {reply[4:].decode(errors='replace')}")
    return int(result)
