"""Environment checks run before any command touches the kernel. Each failure is one line, exit 2."""

from __future__ import annotations

import errno
import os

from bpffs_sync import libbpf
from bpffs_sync.errors import EnvironmentProblem, KernelUnsupported
from bpffs_sync.mirror import bpffs, cgroupfs
from bpffs_sync.paths import Layout
from bpffs_sync.programs import DEFAULT_PROGRAMS, StatProgram, lookup, object_path

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
DEFAULT_BPFFS = "/sys/fs/bpf"


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("bpffs-sync", "", errno.EPERM, "must run as root (CAP_SYS_ADMIN and CAP_BPF)")


def require_kernel() -> None:
    if not os.path.exists(VMLINUX_BTF):
        raise KernelUnsupported("BTF", VMLINUX_BTF, errno.ENOENT, "kernel built without CONFIG_DEBUG_INFO_BTF")
    if not libbpf.available():
        raise EnvironmentProblem("libbpf", "libbpf.so.1", errno.ENOENT, "install libbpf1")


def default_cgroup_root() -> str:
    """The cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one."""
    for m in bpffs.mounts():
        if m.fstype == "cgroup2":
            return m.mount_point
    raise EnvironmentProblem("cgroup root", "", errno.ENOENT, "no cgroup2 mount found (use --cgroup-root)")


def resolve(bpffs_path: str | None, cgroup_root: str | None, programs: list[str] | None) -> tuple[
    Layout, list[StatProgram]
]:
    """Validate the user's choices; nothing is created or mounted here."""
    specs = [lookup(p) for p in (programs or DEFAULT_PROGRAMS)]
    root = os.path.abspath(cgroup_root) if cgroup_root else default_cgroup_root()
    cgroupfs.check_root(root)
    m = bpffs.mount_of(root)
    if m is None or m.fstype != "cgroup2":
        raise EnvironmentProblem("cgroup root", root, 0, "not on a cgroup2 mount (v1 hierarchies come with --v1)")
    return Layout(os.path.abspath(bpffs_path or DEFAULT_BPFFS), root), specs


def prepare_bpffs(layout: Layout) -> None:
    """The default bpffs is mounted if absent (DESIGN.md §2); an explicit one must be bpffs already."""
    bpffs.ensure_bpffs(layout.bpffs, mount_if_absent=layout.bpffs == DEFAULT_BPFFS)


def require_objects(specs: list[StatProgram]) -> None:
    for spec in specs:
        object_path(spec)
