"""The ways a mirror is kept, behind one interface (base.py): user-space pins on a stock kernel
(pins.py), the kernel series' links (kernel_a1.py: Approach 1; kernel_a2.py: Approach 2).

pick() is the one place that chooses; the commands call the backend it returns.
"""

from __future__ import annotations

from bpffs_sync.backends.base import Backend

MODES = ("auto", "user-space", "kernel", "approach-2")


def pick(mode: str = "auto") -> Backend:
    """The backend for `mode`: auto is the kernel series when the running kernel carries it
    (feature probe on its BTF), else the user-space mirror."""
    from bpffs_sync.backends import kernel_a1, pins

    if mode == "user-space":
        return pins.UserSpace()
    if mode == "kernel" or (mode == "auto" and kernel_a1.supported()):
        kernel_a1.require_supported()
        return kernel_a1.KernelA1()
    if mode == "approach-2":
        from bpffs_sync.backends import kernel_a2

        kernel_a2.require_supported()
        return kernel_a2.KernelA2()
    return pins.UserSpace()
