"""The ways a mirror is kept, behind one interface (base.py): user-space pins on a stock kernel
(user_space.py), the kernel series' links (kernel_a1.py: Approach 1; kernel_a2.py: Approach 2); what
they share on one bpffs, and who uses it (sharing.py).

backend_class() is the one place that chooses; `run`, `verify`, `clean` and `status` call the
backend it returns and print what that returns. See docs/architecture.md, "Backends".
"""

from __future__ import annotations

from bpffs_sync import series
from bpffs_sync.backends.base import Backend


def backend_class(mode: str) -> type[Backend]:
    """The backend class of a mode; `auto` is resolved by a feature probe on the running kernel's
    BTF (series.carried().best): Approach 1 when the kernel has its bpffs mirror, else Approach 2
    when it has cgroupfs stat links, else the user-space mirror."""
    from bpffs_sync.backends import kernel_a1, kernel_a2, user_space

    if mode == "auto":
        mode = series.carried().best
    classes: dict[str, type[Backend]] = {"user-space": user_space.UserSpace, "kernel": kernel_a1.KernelA1,
                                         "approach-2": kernel_a2.KernelA2}
    return classes[mode]


def pick(mode: str = "auto") -> Backend:
    """The backend for `mode` (backend_class), refused with one line when the running kernel lacks
    the series it needs."""
    cls = backend_class(mode)
    cls.require()
    return cls()
