"""Carry out a Plan against bpffs. Idempotent: every op tolerates having been done already.

One failed op does not stop the pass: it is logged and counted, and the next pass (event or
periodic) tries again. A cgroup that vanished before its pin was made is not a failure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bpffs_sync import log
from bpffs_sync.errors import CgroupGone, SyncError
from bpffs_sync.mirror import bpffs
from bpffs_sync.mirror.diff import Op, OpKind, Plan, Reason
from bpffs_sync.paths import Layout, display
from bpffs_sync.stats import LoadedStat

_log = log.get(__name__)


@dataclass(slots=True)
class ApplyResult:
    done: Counter[str] = field(default_factory=Counter)
    gone: int = 0
    errors: list[str] = field(default_factory=list)


def _apply_one(op: Op, layout: Layout, stats: dict[str, LoadedStat], live_ids: set[int]) -> None:
    path = layout.mirror_path(op.path)
    if op.kind is OpKind.REMOVE:
        bpffs.remove_tree(path)
        forget = op.reason in (Reason.STALE, Reason.WRONG_CGROUP) and op.actual_cgroup_id
        if forget and op.actual_cgroup_id not in live_ids:
            for loaded in stats.values():
                loaded.forget_cgroup(layout.hierarchy_id, op.actual_cgroup_id)
    elif op.kind is OpKind.MKDIR:
        bpffs.mkdir(path)
    elif op.kind is OpKind.CHMOD:
        bpffs.chmod(path)
    elif op.kind is OpKind.PIN:
        target = stats.get(op.stat)
        if target is None:
            raise SyncError("pin", path, 0, f"stat program {op.stat} is not loaded")
        target.pin_cgroup(layout.cgroup_path(op.path[:-1]), path)


def apply(plan: Plan, layout: Layout, stats: dict[str, LoadedStat], live_ids: set[int]) -> ApplyResult:
    result = ApplyResult()
    for op in plan.ops:
        try:
            _apply_one(op, layout, stats, live_ids)
        except CgroupGone:
            result.gone += 1
            _log.debug("cgroup_gone", op=str(op.kind), path=display(op.path))
            continue
        except (SyncError, OSError) as err:
            result.errors.append(f"{op.describe()}: {err}")
            _log.warning("op_failed", op=str(op.kind), path=display(op.path), reason=str(op.reason),
                         error=str(err), errno=getattr(err, "errno", 0))
            continue
        result.done[str(op.kind)] += 1
    return result

