"""The BTF enum reader (btf.py), the series probe built on it (series.py) and the bpf(2) number by
architecture: against the running kernel's own BTF, plus hand-made blobs for the odd cases."""

from __future__ import annotations

import struct

import pytest

from bpffs_sync import btf, libbpf, series
from bpffs_sync.errors import KernelUnsupported

pytestmark = pytest.mark.unit

# include/uapi/linux/bpf.h, unchanged since they were added (4.10, 5.9, 6.1, 5.7, 5.6, 6.5)
KNOWN = {
    "BPF_PROG_TYPE_CGROUP_SKB": 8,
    "BPF_LINK_TYPE_ITER": 4,
    "BPF_TRACE_ITER": 28,
    "BPF_CGROUP_ITER_SELF_ONLY": 1,
    "BPF_LINK_CREATE": 28,
    "BPF_F_PATH_FD": 1 << 14,
}


def _needs_vmlinux() -> None:
    if btf.vmlinux_or_none() is None:
        pytest.skip(f"no readable {btf.VMLINUX}")


def test_reads_known_enum_values_from_the_host_btf() -> None:
    """Enumerators of named (bpf_prog_type, bpf_link_type) and anonymous enums read as the UAPI says."""
    _needs_vmlinux()
    found = btf.read(btf.VMLINUX, enums=tuple(KNOWN))
    assert found.enums == KNOWN


def test_the_binding_stable_constants_agree_with_the_host_btf() -> None:
    """Every UAPI number libbpf.py still spells out is the running kernel's."""
    _needs_vmlinux()
    ours = {
        "BPF_LINK_TYPE_ITER": libbpf.BPF_LINK_TYPE_ITER,
        "BPF_TRACE_ITER": libbpf.BPF_TRACE_ITER,
        "BPF_CGROUP_ITER_SELF_ONLY": libbpf.BPF_CGROUP_ITER_SELF_ONLY,
        "BPF_CGROUP_ITER_DESCENDANTS_PRE": libbpf.BPF_CGROUP_ITER_DESCENDANTS_PRE,
        "BPF_OBJ_PIN": libbpf.BPF_OBJ_PIN,
        "BPF_OBJ_GET": libbpf.BPF_OBJ_GET,
        "BPF_LINK_CREATE": libbpf.BPF_LINK_CREATE,
        "BPF_F_PATH_FD": libbpf.BPF_F_PATH_FD,
    }
    assert btf.read(btf.VMLINUX, enums=tuple(ours)).enums == ours


def test_structs_and_typedefs_are_found_by_name_and_kind() -> None:
    """A struct is found as a struct, a typedef as a typedef; a name of neither kind is absent."""
    _needs_vmlinux()
    found = btf.read(
        btf.VMLINUX,
        structs=("bpf_link", "btf_trace_sched_switch"),
        typedefs=("btf_trace_sched_switch", "bpf_link", "no_such_typedef_here"),
    )
    assert found.structs == {"bpf_link"}
    assert found.typedefs == {"btf_trace_sched_switch"}


def test_an_absent_enumerator_is_none() -> None:
    _needs_vmlinux()
    found = btf.read(btf.VMLINUX, enums=("BPF_NO_SUCH_THING", "BPF_LINK_TYPE_ITER"))
    assert found.enum_value("BPF_NO_SUCH_THING") is None and found.enum_value("BPF_LINK_TYPE_ITER") == 4


def test_the_host_stock_kernel_carries_neither_series() -> None:
    """This host runs a stock kernel: no series, so auto means user space, and series.uapi() refuses in one line."""
    _needs_vmlinux()
    carried = series.carried()
    assert (carried.uapi, carried.approach1, carried.approach2, carried.best) == (None, False, False, "user-space")
    with pytest.raises(KernelUnsupported, match="BPF_PROG_TYPE_CGROUP_STAT"):
        series.uapi()
    assert libbpf.cgroup_stat_links() == [] and libbpf.cgroupfs_stat_links() == []


# --- hand-made blobs ----------------------------------------------------------------------------


def _blob(types: bytes, strings: bytes) -> bytes:
    hdr = struct.pack("=HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def _type(name_off: int, kind: int, vlen: int, size: int, kflag: int = 0) -> bytes:
    return struct.pack("=III", name_off, kflag << 31 | kind << 24 | vlen, size)


STRINGS = b"\0A\0B\0NEG\0BIG\0s\0t\0int\0"
A, B, NEG, BIG, S, T, INT = 1, 3, 5, 9, 13, 15, 17


def _sample() -> bytes:
    types = (
        _type(INT, btf.KIND_INT, 0, 4)
        + struct.pack("=I", 32)  # int: 4 bytes after
        + _type(S, btf.KIND_STRUCT, 1, 4)
        + struct.pack("=III", A, 1, 0)  # struct s { int A; }: member named A
        + _type(0, btf.KIND_ENUM, 2, 4)
        + struct.pack("=IIII", A, 7, B, 1 << 14)  # enum { A = 7, B = 1 << 14 }
        + _type(0, btf.KIND_ENUM, 1, 4, kflag=1)
        + struct.pack("=Ii", NEG, -2)  # signed enum
        + _type(0, btf.KIND_ENUM64, 1, 8)
        + struct.pack("=III", BIG, 5, 1)  # BIG = 1 << 32 | 5
        + _type(T, btf.KIND_TYPEDEF, 0, 1)
    )
    return _blob(types, STRINGS)


def test_enum_enum64_signed_struct_typedef_in_a_made_blob() -> None:
    """Each kind's members are skipped by their size, so what follows is read right."""
    found = btf.query(_sample(), enums=("A", "B", "NEG", "BIG"), structs=("s", "A"), typedefs=("t", "s"))
    assert found.enums == {"A": 7, "B": 1 << 14, "NEG": -2, "BIG": 1 << 32 | 5}
    assert found.structs == {"s"} and found.typedefs == {"t"}


def test_a_member_name_is_not_an_enumerator() -> None:
    """`A` names a struct member and an enumerator: only the enumerator's value counts."""
    assert btf.query(_sample(), enums=("A",)).enums == {"A": 7}


def test_unknown_kind_bad_magic_and_short_blob_are_one_line_errors() -> None:
    with pytest.raises(KernelUnsupported, match="unknown BTF kind 31"):
        btf.query(_blob(_type(0, 31, 0, 0), b"\0"), enums=("A",))
    with pytest.raises(KernelUnsupported, match="bad magic"):
        btf.query(b"\0" * 64)
    with pytest.raises(KernelUnsupported, match="shorter"):
        btf.query(b"\x9f\xeb")
    with pytest.raises(KernelUnsupported, match="No such file"):
        btf.read("/nonexistent/btf")


# --- the series, judged from what a BTF holds -------------------------------------------------------


def _found(enums: dict[str, int], structs: tuple[str, ...] = ()) -> btf.Found:
    return btf.Found(enums, frozenset(structs), frozenset())


PREFIX = {series.PROG_TYPE: 33, series.ATTACH_TYPE: 62, series.LINK_TYPE: 16}


@pytest.mark.parametrize(
    ("enums", "structs", "best", "flag"),
    [
        ({}, (), "user-space", None),  # a stock kernel
        ({series.PROG_TYPE: 33}, (), "user-space", None),  # a half series is none
        ({**PREFIX, series.MIRROR_OPTION: 5}, (), "kernel", None),  # Approach 1
        ({**PREFIX, series.CGROUPFS_FLAG: 1}, (), "approach-2", 1),  # Approach 2 on Approach 1's prefix
        ({**PREFIX}, (series.A2_LINK_STRUCT,), "approach-2", series.CGROUPFS_FLAG_UAPI),  # its enum dropped
        ({**PREFIX, series.MIRROR_OPTION: 5, series.CGROUPFS_FLAG: 1}, (), "kernel", 1),  # both: Approach 1
    ],
)
def test_which_series_a_btf_says(enums: dict[str, int], structs: tuple[str, ...], best: str, flag: int | None) -> None:
    """auto picks Approach 1 when the kernel has its mirror, else Approach 2, else user space; the
    numbers are the BTF's."""
    carried = series.from_btf(_found(enums, structs))
    assert carried.best == best
    if carried.uapi is not None:
        assert (carried.uapi.prog_type, carried.uapi.attach_type, carried.uapi.link_type) == (33, 62, 16)
        assert carried.uapi.cgroupfs_flag == flag
    assert series.from_btf(None).best == "user-space"


# --- bpf(2)'s number --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "nr"),
    [
        ("x86_64", 321),
        ("aarch64", 280),
        ("riscv64", 280),
        ("i686", 357),
        ("armv7l", 386),
        ("ppc64le", 361),
        ("s390x", 351),
    ],
)
def test_bpf_syscall_number_by_architecture(machine: str, nr: int) -> None:
    assert libbpf.nr_bpf(machine) == nr


def test_an_unknown_architecture_is_a_clear_error() -> None:
    with pytest.raises(KernelUnsupported, match="no bpf syscall number known for this architecture") as exc:
        libbpf.nr_bpf("pdp11")
    assert "pdp11" in str(exc.value) and "\n" not in str(exc.value)


def test_functions_are_found_by_name_and_kind() -> None:
    """A kfunc is a FUNC of the host's BTF (bpf_cgroup_acquire, since 6.2); a made-up name and a
    struct's name are not functions."""
    _needs_vmlinux()
    found = btf.read(btf.VMLINUX, funcs=("bpf_cgroup_acquire", "bpffs_sync_no_such_kfunc", "bpf_link"))
    assert found.funcs == {"bpf_cgroup_acquire"}
    assert btf.vmlinux_or_none(funcs=("bpffs_sync_no_such_kfunc",)) == btf.Found({}, frozenset(), frozenset())


def test_a_function_in_a_made_blob() -> None:
    """A FUNC is found by its name; a FUNC_PROTO's parameter of that name is not a function."""
    strings = b"\0f\0g\0int\0"
    types = (
        _type(6, btf.KIND_INT, 0, 4)
        + struct.pack("=I", 32)
        + _type(0, btf.KIND_FUNC_PROTO, 1, 1)
        + struct.pack("=II", 3, 1)  # int (*)(int g)
        + _type(1, btf.KIND_FUNC, 1, 2)  # int f(int g), global linkage
    )
    found = btf.query(_blob(types, strings), funcs=("f", "g"), typedefs=("f",))
    assert found.funcs == {"f"} and found.typedefs == frozenset()
