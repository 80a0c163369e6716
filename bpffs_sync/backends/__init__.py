"""The ways a mirror is kept, behind one interface (base.py): user-space pins on a stock kernel
(pins.py), the kernel series' links (kernel_a1.py: Approach 1; kernel_a2.py: Approach 2).

pick() is the one place that chooses; the commands call the backend it returns.
"""

from __future__ import annotations

from bpffs_sync.backends.base import Backend


def backend_class(mode: str) -> type[Backend]:
    """The backend class of a mode, without probing the kernel; auto is resolved by the probe: the
    kernel series when the running kernel carries it (its BTF), else the user-space mirror."""
    from bpffs_sync.backends import kernel_a1, kernel_a2, pins

    if mode == "auto":
        mode = "kernel" if kernel_a1.supported() else "user-space"
    classes: dict[str, type[Backend]] = {"user-space": pins.UserSpace, "kernel": kernel_a1.KernelA1,
                                         "approach-2": kernel_a2.KernelA2}
    return classes[mode]


def pick(mode: str = "auto") -> Backend:
    """The backend for `mode` (backend_class), refused with one line when the running kernel lacks
    the series it needs."""
    cls = backend_class(mode)
    cls.require()
    return cls()
