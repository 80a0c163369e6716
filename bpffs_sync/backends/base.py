"""One interface behind `run`, `verify`, `clean` and `status`: the ways a mirror can be kept.

    user-space  backends/user_space.py any kernel with cgroup iterators: a daemon pins one iterator per
                                       cgroup and stat and follows cgroupfs (Approach 1 in user space)
    kernel      backends/kernel_a1.py  the kernel-approach1 series: one cgroup stat link per stat; the
                                       kernel makes and removes the files in mkdir/rmdir (Approach 1)
    approach-2  backends/kernel_a2.py  the kernel-approach2 series: `bpf.stat.<name>` files in the cgroup
                                       directories themselves (Approach 2)

pick() chooses: what the command line asks for (--user-space, --kernel, --approach 2), else the
kernel series when the running kernel has it (a feature probe on its BTF), else user space. The
commands never branch on the mode: they call the chosen backend and print what it returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from bpffs_sync.mirror.daemon import RunOptions
from bpffs_sync.mirror.forest import Selection
from bpffs_sync.paths import Layout
from bpffs_sync.programs import StatProgram


class Verdict(Protocol):
    """What verify returns: in sync or not, as text and as JSON."""

    @property
    def in_sync(self) -> bool: ...

    def to_json(self) -> dict[str, Any]: ...

    def to_text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Request:
    """What a command asks of a backend."""

    layout: Layout
    specs: list[StatProgram]
    selection: Selection | None = None  # --v1
    programs_given: bool = False  # --program named the stats (else the defaults / every catalogued one)
    run: RunOptions = field(default_factory=RunOptions)


@dataclass(slots=True)
class RunResult:
    """What `run` did, for the command to print (a daemon returns when it stops)."""

    code: int
    doc: dict[str, Any]
    text: list[str]


class Backend(ABC):
    mode: ClassVar[str]  # user-space | kernel | approach-2: what `status` says runs
    # "<command> <option>" -> why that option means nothing to this backend: the command refuses it
    # (exit 2, one line), never silently ignores it.
    refuses: ClassVar[dict[str, str]] = {}

    @classmethod
    @abstractmethod
    def require(cls) -> None:
        """Raise KernelUnsupported (one line, exit 2) when the running kernel cannot serve this mode."""

    @abstractmethod
    def run(self, req: Request) -> RunResult:
        """Make the mirror (and, for user space, keep it until stopped)."""

    @abstractmethod
    def verify(self, req: Request) -> Verdict:
        """Does the mirror match cgroupfs? Kernel state only."""

    @abstractmethod
    def clean(self, req: Request) -> int:
        """Remove what this backend made; returns how many entries (or links) went."""

    @abstractmethod
    def status(self, req: Request) -> dict[str, Any]:
        """This backend's part of `status --json`."""
