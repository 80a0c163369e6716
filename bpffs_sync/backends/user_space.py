"""The user-space mirror (Approach 1 in user space, any kernel with cgroup iterators): a daemon
keeps one pinned SELF_ONLY cgroup iterator per cgroup and stat (mirror/daemon.py); verify diffs
cgroupfs against the pins, plus the collectors' health (a mirror whose collector is gone shows
files full of zeros). `--v1` verifies each selected v1 tree the same way, plus the top of the v1
mirror (hierarchy directories and controller symlinks) in a ForestReport.

clean removes the mirrors (v2 and v1) and the pinned collectors and maps, holding the bpffs's lock
(rundir.exclusive): refused while a daemon runs (it would rebuild the mirror at once), and no daemon
can start half-way through. Refused, too, while a kernel mode's links use this bpffs's collectors
(sharing.py: Approach 1's `native_link`, Approach 2's `cgroupfs_link*` pins beside them): unpinning
a collector would freeze the counts of the kernel's files without a word. It never crosses a mount
point: a filesystem mounted below a tree it removes is left alone with the directories holding it
(bpffs.remove_tree_at), and clean then exits 2 naming each, after removing everything else of ours.
"""

from __future__ import annotations

from typing import Any, ClassVar

from bpffs_sync import rundir
from bpffs_sync.backends import sharing
from bpffs_sync.backends.base import Backend, Request, RunResult, Verdict
from bpffs_sync.errors import EnvironmentProblem, MountPoint, Tampered, UsageError
from bpffs_sync.loader import Generations, collector_problem
from bpffs_sync.mirror import bpffs, cgroupfs
from bpffs_sync.mirror.diff import diff
from bpffs_sync.mirror.drift import ForestReport, Report
from bpffs_sync.mirror.forest import ALL, Selection, Tree, resolve_now, top_actual, top_desired, top_diff
from bpffs_sync.mirror.tree import Kind
from bpffs_sync.paths import MIRROR_V1, PRIVATE_DIR, Layout
from bpffs_sync.programs import CATALOGUE, StatProgram, lookup, object_path


def _collector_problems(layout: Layout, specs: list[StatProgram], gens: Generations) -> list[str]:
    problems = []
    for spec in specs:
        if spec.stats_map is None:  # no collector, no map: nothing to miss
            continue
        map_id = gens.map_ids.get(spec.name)
        if map_id is None:
            problems.append(f"{spec.name}: no stats map pinned at {layout.private_path(spec.name, spec.stats_map)}")
            continue
        problem = collector_problem(layout, spec, map_id)
        if problem is not None:
            problems.append(f"{spec.name}: {problem}")
    return problems


def verify_forest(selection: Selection, trees: list[Tree], bpffs_root: str) -> ForestReport:
    """Every selected v1 tree, and the entries above them. With `all`, an entry under
    <bpffs>/cgroup-v1 that no mounted hierarchy explains is stale drift."""
    top = top_diff(top_desired(trees), top_actual(bpffs_root), prune=ALL in selection.selectors)
    reports = [verify(t.layout, [lookup(n) for n in t.stats]) for t in trees]
    return ForestReport(bpffs_root, top, reports)


def verify(layout: Layout, specs: list[StatProgram]) -> Report:
    names = tuple(s.name for s in specs)
    gens = Generations.from_pins(layout, specs)
    view = cgroupfs.walk(layout, names)
    actual = bpffs.walk(layout, bpffs.PinJudge(gens.judge))
    plan = diff(view.tree, actual.tree, view.conflicts, view.opaque | actual.opaque)
    cgroups = sum(1 for d in view.tree.values() if d.kind is Kind.DIR)
    files = sum(1 for a in actual.tree.values() if a.kind is Kind.PIN)
    return Report(layout, plan, cgroups, files, _collector_problems(layout, specs, gens))


def v1_trees(layout: Layout) -> dict[str, Any]:
    """What is under <bpffs>/cgroup-v1: each hierarchy's counts, each controller symlink's target."""
    out: dict[str, Any] = {}
    stats = frozenset(CATALOGUE)
    try:
        top = top_actual(layout.bpffs)
    except Tampered as err:  # planted at the sticky root: not ours, shown, not fatal
        return {"not_ours": err.detail}
    for name, target in sorted(top.items()):
        if target == "":
            out[name] = bpffs.count_tree(layout.bpffs, (MIRROR_V1, name), stats)
        elif target is not None:
            out[name] = {"symlink": target}
    return out


def kernel_users(private_entries: dict[str, list[str]]) -> dict[str, list[str]]:
    """{stat: kernel modes whose link pins sit in its private directory}, for the stats that have any."""
    out = {stat: sorted(sharing.link_users(names)) for stat, names in private_entries.items()}
    return {stat: modes for stat, modes in sorted(out.items()) if modes}


def clean(layout: Layout) -> int:
    """`bpffs-sync clean --user-space`: the mirrors and the private directory, unless a kernel mode uses it."""
    with rundir.exclusive(layout.bpffs, rundir.ROLE_CLEAN):
        users = kernel_users(sharing.private_entries(layout))
        if users:
            modes = sorted({m for ms in users.values() for m in ms})
            raise EnvironmentProblem(
                "clean", layout.private_root, 0,
                f"kernel links use the collectors of {', '.join(users)} ("
                + "; ".join(sharing.USED_BY[m] for m in modes) + " first)")
        removed = 0
        tops = [*sharing.user_space_tops(layout), (PRIVATE_DIR,)]
        foreign: list[Tampered] = []
        mounts: list[str] = []
        for top in tops:  # what is ours goes; what is not (planted at the sticky root) stays, and is said
            try:
                removed += bpffs.remove_tree(layout.bpffs, top, left=mounts)
            except Tampered as err:
                foreign.append(err)
        if foreign:
            raise Tampered("clean", foreign[0].path, 0, f"removed {removed} entries of ours; left alone: "
                           + "; ".join([f"{e.path}: {e.detail}" for e in foreign]
                                       + [f"{m}: mount point" for m in mounts]))
        if mounts:
            raise MountPoint("clean", layout.bpffs, 0, f"removed {removed} entries of ours; left alone, with the "
                             "directories holding them (another filesystem is mounted there: umount it, then "
                             f"clean again): mount point {', mount point '.join(mounts)}")
        return removed


class UserSpace(Backend):
    """Approach 1 in user space: the daemon (mirror/daemon.py) and its pins."""

    mode = "user-space"
    refuses: ClassVar[dict[str, str]] = {
        "run --json": "only with --kernel or --approach 2 (a daemon logs; `status --json` shows it)",
    }

    @classmethod
    def require(cls) -> None:
        """Any kernel with cgroup iterators (preflight checks BTF and libbpf)."""

    def run(self, req: Request) -> RunResult:
        from bpffs_sync.mirror.daemon import run

        if sharing.mirror_enabled(req.layout.bpffs):
            raise UsageError("run", req.layout.bpffs, 0,
                             "this bpffs holds the kernel's mirror (cgroup_mirror): use --kernel")
        return RunResult(run(req.layout, req.specs, req.run, req.selection), {}, [])

    def verify(self, req: Request) -> Verdict:
        if req.selection is None:
            return verify(req.layout, req.specs)
        trees = resolve_now(req.selection, req.layout)
        for tree in trees:
            for name in tree.stats:
                object_path(lookup(name))
        return verify_forest(req.selection, trees, req.layout.bpffs)

    def clean(self, req: Request) -> int:
        return clean(req.layout)

    def status(self, req: Request) -> dict[str, Any]:
        """The mirror trees: v2's directories and stat files, and each v1 hierarchy's."""
        names = frozenset(s.name for s in req.specs) | frozenset(CATALOGUE)
        return {"mirror": bpffs.count_tree(req.layout.bpffs, req.layout.mirror_parts, names),
                "v1": v1_trees(req.layout)}
