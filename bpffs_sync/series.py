"""Which kernel series the running kernel carries, and the UAPI numbers it gave them, read from its BTF.

Both series (kernel-approach1/, kernel-approach2/) add names to include/uapi/linux/bpf.h; their
numbers depend on the tree they were applied to (7.3's bpf_attach_type is not 6.18's), so they are
read from the running kernel's BTF (btf.py), never hard-coded:

    the shared prerequisite (A1 2/11 = A2 1/8)  BPF_PROG_TYPE_CGROUP_STAT, BPF_CGROUP_STAT (attach type),
                                                BPF_LINK_TYPE_CGROUP_STAT
    Approach 1 (its 5/11, the bpffs mirror)     OPT_CGROUP_MIRROR, bpffs's `cgroup_mirror` mount option
    Approach 2 (its 7/8)                        BPF_F_CGROUP_STAT_CGROUPFS (link_create.cgroup_stat.flags)
    Approach 1's file writes (its 13/15)        BPF_F_CGROUP_STAT_WRITE (the same flags; bit 0 in both images,
                                                the comparison image moves CGROUPFS to bit 1)

Each series carries the shared prerequisites itself (kernel-approach2/prereqs), so a kernel may carry
Approach 1 alone, Approach 2 alone, or both (the comparison image). The compiler may drop an
anonymous enum nothing names in a type, so Approach 2 is also recognised by its link struct
(struct bpf_stat_link); its flag then has the value its UAPI header gives it.

See docs/architecture.md, "Backends".
"""

from __future__ import annotations

from dataclasses import dataclass

from bpffs_sync import btf
from bpffs_sync.errors import KernelUnsupported

PROG_TYPE = "BPF_PROG_TYPE_CGROUP_STAT"
ATTACH_TYPE = "BPF_CGROUP_STAT"
LINK_TYPE = "BPF_LINK_TYPE_CGROUP_STAT"
MIRROR_OPTION = "OPT_CGROUP_MIRROR"
CGROUPFS_FLAG = "BPF_F_CGROUP_STAT_CGROUPFS"
WRITE_FLAG = "BPF_F_CGROUP_STAT_WRITE"
A2_LINK_STRUCT = "bpf_stat_link"
CGROUPFS_FLAG_UAPI = 1 << 0  # kernel-approach2 7/8, include/uapi/linux/bpf.h: used only if BTF dropped its enum

_ENUMS = (PROG_TYPE, ATTACH_TYPE, LINK_TYPE, MIRROR_OPTION, CGROUPFS_FLAG, WRITE_FLAG)


@dataclass(frozen=True, slots=True)
class Uapi:
    """The numbers a cgroup stat link is made and recognised with, on this kernel."""

    prog_type: int  # BPF_PROG_TYPE_CGROUP_STAT
    attach_type: int  # BPF_CGROUP_STAT
    link_type: int  # BPF_LINK_TYPE_CGROUP_STAT
    cgroupfs_flag: int | None  # BPF_F_CGROUP_STAT_CGROUPFS; None: no Approach 2
    write_flag: int | None = None  # BPF_F_CGROUP_STAT_WRITE; None: no writable files (Approach 1 before 13/15)


@dataclass(frozen=True, slots=True)
class Carried:
    """What the running kernel carries."""

    uapi: Uapi | None  # None: neither series (a stock kernel)
    approach1: bool  # the bpffs mirror (`-o cgroup_mirror`)
    approach2: bool  # bpf.stat.<name> files in cgroupfs

    @property
    def best(self) -> str:
        """The mode `auto` means here: Approach 1 when the kernel has it, else Approach 2, else user space."""
        return "kernel" if self.approach1 else "approach-2" if self.approach2 else "user-space"


def from_btf(found: btf.Found | None) -> Carried:
    """The series a kernel carries, judged from what its BTF holds (None: no BTF at all)."""
    if found is None:
        return Carried(None, False, False)
    prog_type, attach_type, link_type = (found.enum_value(n) for n in (PROG_TYPE, ATTACH_TYPE, LINK_TYPE))
    if prog_type is None or attach_type is None or link_type is None:
        return Carried(None, False, False)
    flag = found.enum_value(CGROUPFS_FLAG)
    if flag is None and A2_LINK_STRUCT in found.structs:
        flag = CGROUPFS_FLAG_UAPI
    uapi = Uapi(prog_type, attach_type, link_type, flag, found.enum_value(WRITE_FLAG))
    return Carried(uapi, approach1=found.enum_value(MIRROR_OPTION) is not None, approach2=flag is not None)


def carried() -> Carried:
    """What the running kernel carries (its BTF read once per process)."""
    return from_btf(btf.vmlinux_or_none(enums=_ENUMS, structs=(A2_LINK_STRUCT,)))


def uapi() -> Uapi:
    """This kernel's numbers for cgroup stat links; KernelUnsupported (one line) on a kernel with neither series."""
    found = carried().uapi
    if found is None:
        raise KernelUnsupported(
            "cgroup stat link",
            btf.VMLINUX,
            0,
            f"the kernel's BTF has no {PROG_TYPE} (neither kernel series is in this kernel)",
        )
    return found
