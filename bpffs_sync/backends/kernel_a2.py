"""Approach 2 (kernel-approach2/): cgroup stat links whose files live in cgroupfs itself.

On a kernel with the kernel-approach2 series, a cgroup stat link made with
BPF_F_CGROUP_STAT_CGROUPFS puts `bpf.stat.<name>` in the directory of its root cgroup and of every
descendant, on the v2 hierarchy or on a v1 one, and keeps them in step with mkdir and rmdir. User
space attaches one link per stat and hierarchy and checks the result; there is no bpffs mirror.

- supported(): the running kernel has the series (BPF_F_CGROUP_STAT_CGROUPFS in its BTF: series.carried()).
- CgroupfsStat.ensure_link(): load the stat's `.stat.bpf.o` as BPF_PROG_TYPE_CGROUP_STAT (the same
  object Approach 1 uses), share its stats map and collector pinned under <bpffs>/bpffs-sync/<stat>/,
  and pin the link there as `cgroupfs_link` (v2) or `cgroupfs_link_h<hierarchy id>` (v1): adopted
  on a rerun, its program swapped in place (BPF_LINK_UPDATE) when stale.
- verify(): every cgroup of each link's subtree has exactly the link's file, every `bpf.stat.*`
  file belongs to a link, each file read names its own cgroup, nr_files matches; drift by reason.
- clean(): detach the links (the kernel removes their files), drop our link pins.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from bpffs_sync import libbpf, rundir, series
from bpffs_sync.backends import sharing
from bpffs_sync.backends.base import Backend, Request, RunResult
from bpffs_sync.backends.statlink import LinkDesc, StatLink, file_cgroup_id
from bpffs_sync.errors import KernelUnsupported, UsageError
from bpffs_sync.loader import Generations
from bpffs_sync.mirror import bpffs, forest
from bpffs_sync.paths import Layout
from bpffs_sync.programs import CATALOGUE, StatProgram, lookup

PREFIX = libbpf.CGROUPFS_STAT_PREFIX
LINK_PIN = sharing.A2_LINK_PIN


def supported() -> bool:
    """Does the running kernel carry the kernel-approach2 series?"""
    return series.carried().approach2


def require_supported() -> None:
    if not supported():
        raise KernelUnsupported("--approach 2", "/sys/kernel/btf/vmlinux", errno.EOPNOTSUPP,
                                "kernel lacks cgroupfs cgroup stat links (kernel-approach2 series)")


def file_name(stat: str) -> str:
    return PREFIX + stat


def pin_name(hierarchy_id: int) -> str:
    return LINK_PIN if hierarchy_id == 0 else f"{LINK_PIN}_h{hierarchy_id}"  # bpffs: no dots in user names


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What ensure_link found and did for one stat on one hierarchy."""

    stat: str
    action: str  # created | adopted | updated (program swapped, files kept)
    link_id: int
    cgroup_root: str
    hierarchy_id: int
    file: str
    pin: str
    nr_files: int
    nr_errors: int


class CgroupfsStat(StatLink):
    """One stat's Approach 2 link per hierarchy: `bpf.stat.<name>` in cgroupfs, pinned as
    `cgroupfs_link` (v2) or `cgroupfs_link_h<id>` (a v1 hierarchy)."""

    attach_op = "attach cgroupfs stat link"
    exists_hint = ("another link already makes files of this name on this hierarchy "
                   "(`bpffs-sync clean --approach 2` detaches it)")

    def _create(self, prog_fd: int, cgroup_fd: int, name: str | None) -> int:
        return libbpf.link_create_cgroupfs_stat(prog_fd, cgroup_fd, name)

    def _describe(self, fd: int, what: str) -> libbpf.CgroupfsStatLinkDesc | None:
        return libbpf.cgroupfs_stat_link_info(fd, what)

    def _ours(self, desc: LinkDesc, root_id: int, hierarchy_id: int) -> bool:
        assert isinstance(desc, libbpf.CgroupfsStatLinkDesc)
        return (desc.cgroup_id == root_id and desc.hierarchy_id == hierarchy_id
                and desc.name == file_name(self.spec.name))

    def pin_name(self, hierarchy_id: int) -> str:
        return pin_name(hierarchy_id)

    def file_name(self) -> str:
        return file_name(self.spec.name)

    def link_pin(self, hierarchy_id: int) -> str:
        return self.layout.private_path(self.spec.name, pin_name(hierarchy_id))

    def ensure_link(self, cgroup_dir: str, hierarchy_id: int = 0) -> LinkOutcome:
        """The stat's link at cgroup_dir on that hierarchy (statlink.StatLink._ensure)."""
        action, desc, pin = self._ensure(cgroup_dir, hierarchy_id)
        assert isinstance(desc, libbpf.CgroupfsStatLinkDesc)
        return LinkOutcome(self.spec.name, action, desc.link_id, cgroup_dir, hierarchy_id, desc.name, pin,
                           desc.nr_files, desc.nr_errors)


@dataclass(frozen=True, slots=True)
class Target:
    """Where links go: a cgroup directory, its hierarchy and the stats it gets."""

    cgroup_root: str
    hierarchy_id: int
    stats: tuple[StatProgram, ...]


def targets(layout: Layout, specs: Iterable[StatProgram], selection: forest.Selection | None) -> list[Target]:
    """The v2 root with specs, plus each `--v1` hierarchy (or subtree) with its controllers' stats."""
    out = [Target(layout.cgroup_root, 0, tuple(specs))]
    if selection is not None:
        for tree in forest.resolve_now(selection, layout):
            assert tree.hierarchy is not None
            out.append(Target(tree.layout.cgroup_root, tree.hierarchy.hierarchy_id,
                              tuple(lookup(s) for s in tree.stats)))
    return out


def attach_stats(layout: Layout, specs: Iterable[StatProgram], force_raw_tp: bool = False,
                 selection: forest.Selection | None = None) -> list[LinkOutcome]:
    """`bpffs-sync run --approach 2`: make sure each stat has its link at layout.cgroup_root (and at
    each `--v1` target). One pass; the kernel keeps the files; rerunning is a no-op."""
    require_supported()
    outcomes = []
    for target in targets(layout, specs, selection):
        for spec in target.stats:
            with CgroupfsStat(layout, spec, force_raw_tp) as cs:
                outcomes.append(cs.ensure_link(target.cgroup_root, target.hierarchy_id))
    return outcomes


def detach_all(files: Iterable[str] | None = None) -> int:
    """BPF_LINK_DETACH every Approach 2 link (or those making these file names); returns how many."""
    wanted = set(files) if files is not None else None
    return libbpf.detach_links(d.link_id for d in libbpf.cgroupfs_stat_links() if wanted is None or d.name in wanted)


def clean(layout: Layout, stats: Iterable[str]) -> int:
    """`bpffs-sync clean --approach 2`: detach the links making these stats' files (ours or not),
    remove our link pins, and each stat's private directory (its map and collector) unless another
    mode uses it: Approach 1's link, or the user-space mirror's pins (sharing.remove_own)."""
    names = list(stats)
    done = detach_all(file_name(s) for s in names)
    return done + sharing.remove_own(layout, sharing.APPROACH_2, names)


# --- verify --------------------------------------------------------------------------------------

DRIFT_REASONS = ("missing", "unexpected", "wrong_cgroup", "unreadable", "nr_files", "root_not_visible",
                 "stale_program")


@dataclass(slots=True)
class Report:
    """`verify --approach 2`: drift by reason; in sync when there is none."""

    roots: list[str]
    cgroups: int = 0
    files: int = 0
    drift: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)

    def add(self, reason: str, **item: Any) -> None:
        assert reason in DRIFT_REASONS, reason
        self.drift.setdefault(reason, []).append(item)

    @property
    def in_sync(self) -> bool:
        return not self.drift

    def to_json(self) -> dict[str, Any]:
        return {"in_sync": self.in_sync, "approach": "approach-2", "cgroup_roots": self.roots,
                "cgroups": self.cgroups, "files": self.files, "drift": self.drift, "links": self.links}

    def to_text(self) -> str:
        head = (f"{'in sync' if self.in_sync else 'DRIFT'}: {self.cgroups} cgroups, {self.files} bpf.stat files, "
                f"{len(self.links)} links")
        lines = [head]
        for reason in DRIFT_REASONS:
            for item in self.drift.get(reason, []):
                where = item.get("path") or item.get("link")
                lines.append(f"  {reason}: {where} {item.get('detail', '')}".rstrip())
        return "\n".join(lines)


def link_doc(desc: libbpf.CgroupfsStatLinkDesc) -> dict[str, Any]:
    """An Approach 2 link as `verify --approach 2 --json` and `status --json` show it."""
    return {"id": desc.link_id, "name": desc.name, "cgroup_id": desc.cgroup_id, "hierarchy_id": desc.hierarchy_id,
            "nr_files": desc.nr_files, "nr_errors": desc.nr_errors, "prog_id": desc.prog_id}


def _walk(top: str) -> list[tuple[str, int, list[str], set[str]]]:
    """(path, cgroup id, bpf.stat files, child dir names) for every cgroup under top, top included,
    read relative to directory fds (no symlink followed)."""
    out = []
    stack = [(top, os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))]
    while stack:
        path, fd = stack.pop()
        try:
            files, dirs = [], set()
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        dirs.add(entry.name)
                    elif entry.name.startswith(PREFIX):
                        files.append(entry.name)
            out.append((path, os.fstat(fd).st_ino, files, dirs))
            for name in dirs:
                try:
                    child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:  # removed meanwhile
                    continue
                stack.append((os.path.join(path, name), child))
        finally:
            os.close(fd)
    return out


def _hierarchy_roots(cgroup_root: str, selection: forest.Selection | None) -> dict[int, str]:
    """hierarchy id -> the mount point walked: the v2 mount holding cgroup_root, plus `--v1` ones."""
    mount = bpffs.mount_of(cgroup_root)
    if mount is None or mount.fstype != "cgroup2":
        raise UsageError("verify --approach 2", cgroup_root, 0, "not on a cgroup2 mount")
    roots = {0: mount.mount_point}
    if selection is not None:
        for tree in forest.resolve_now(selection, Layout(os.devnull, cgroup_root)):
            assert tree.hierarchy is not None
            roots[tree.hierarchy.hierarchy_id] = tree.hierarchy.mount_point
    return roots


def verify(cgroup_root: str, selection: forest.Selection | None = None, layout: Layout | None = None) -> Report:
    """Every Approach 2 link on a walked hierarchy (the v2 one, plus `--v1` ones) against cgroupfs:
    each cgroup below a link's root holds its file (unless a child cgroup has that name), no other
    `bpf.stat.*` file exists there, each file read names its own cgroup, nr_files is the count
    found. With a layout, links of catalogued stats must run the current program generation."""
    roots = _hierarchy_roots(cgroup_root, selection)
    links = libbpf.cgroupfs_stat_links()
    report = Report(sorted(roots.values()), links=[link_doc(d) for d in links])
    by_hier: dict[int, list[libbpf.CgroupfsStatLinkDesc]] = {}
    for desc in links:
        if desc.cgroup_id:  # detached ones make no files
            by_hier.setdefault(desc.hierarchy_id, []).append(desc)
    for hid, top in roots.items():
        _verify_hierarchy(report, top, by_hier.pop(hid, []))
    for descs in by_hier.values():  # links on hierarchies not walked: not ours to judge
        report.links = [d for d in report.links if d["id"] not in {x.link_id for x in descs}]
    if layout is not None:
        _stale_programs(report, layout, links)
    return report


def _verify_hierarchy(report: Report, top: str, links: list[libbpf.CgroupfsStatLinkDesc]) -> None:
    cgroups = _walk(top)
    ancestors: dict[str, list[int]] = {}  # path -> cgroup ids from top down to it
    found: dict[int, int] = {d.link_id: 0 for d in links}
    roots = {d.cgroup_id: d for d in links}
    seen_roots: set[int] = set()
    for path, cgid, files, dirs in sorted(cgroups):
        parent = ancestors.get(os.path.dirname(path), []) if path != top else []
        chain = [*parent, cgid]
        ancestors[path] = chain
        if cgid in roots:
            seen_roots.add(cgid)
        report.cgroups += 1
        covering = {d.name: d for d in links if d.cgroup_id in chain}
        present = set(files)
        report.files += len(present)
        for name, desc in covering.items():
            if name in dirs:  # a child cgroup took the name: the kernel counts it in nr_errors
                continue
            if name not in present:
                report.add("missing", path=os.path.join(path, name), link=desc.link_id)
                continue
            found[desc.link_id] += 1
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                got = file_cgroup_id(fd, name)
            finally:
                os.close(fd)
            if isinstance(got, str):
                report.add("unreadable", path=os.path.join(path, name), detail=got)
            elif got not in (-1, cgid):
                report.add("wrong_cgroup", path=os.path.join(path, name), expected_cgroup_id=cgid,
                           actual_cgroup_id=got)
        for name in sorted(present - covering.keys()):
            report.add("unexpected", path=os.path.join(path, name))
    for desc in links:
        if desc.cgroup_id not in seen_roots:
            report.add("root_not_visible", link=desc.link_id,
                       detail=f"{desc.name}: root cgroup {desc.cgroup_id} not under {top}")
        elif found[desc.link_id] != desc.nr_files:
            report.add("nr_files", link=desc.link_id,
                       detail=f"{desc.name}: nr_files {desc.nr_files}, {found[desc.link_id]} files found")


def _stale_programs(report: Report, layout: Layout, links: list[libbpf.CgroupfsStatLinkDesc]) -> None:
    """Links of catalogued stats whose program does not use the stats map pinned now."""
    ours = [(d, d.name[len(PREFIX):]) for d in links if d.cgroup_id and d.name[len(PREFIX):] in CATALOGUE]
    gens = Generations.from_pins(layout, [CATALOGUE[s] for _, s in ours])
    for desc, stat in ours:
        if gens.map_ids.get(stat) is not None and not gens.judge(stat, desc.prog_id):
            report.add("stale_program", link=desc.link_id,
                       detail=f"{desc.name}: runs program {desc.prog_id}, not the current generation")


# --- the backend -----------------------------------------------------------------------------------


class KernelA2(Backend):
    """The kernel-approach2 series keeps `bpf.stat.<name>` in cgroupfs: run attaches one link per stat."""

    mode = "approach-2"
    refuses: ClassVar[dict[str, str]] = {
        "run --once": "the kernel keeps the files: run attaches the links and exits",
        "run --no-watch": "the kernel keeps the files: nothing to watch",
        "run --resync-interval": "the kernel keeps the files: nothing to resync",
        "verify --program": "verify checks every Approach 2 link the kernel has",
        "run --file-mode": "the kernel sets the files' mode by cgroupfs's rule",
        "run --file-group": "the kernel sets the files' owner by cgroupfs's rule",
        "verify --file-mode": "the kernel sets the files' mode by cgroupfs's rule",
        "verify --file-group": "the kernel sets the files' owner by cgroupfs's rule",
    }

    @classmethod
    def require(cls) -> None:
        require_supported()

    def run(self, req: Request) -> RunResult:
        outcomes = attach_stats(req.layout, req.specs, force_raw_tp=req.run.force_raw_tp,
                                selection=req.selection)
        doc = {"cgroup_root": req.layout.cgroup_root, "links": [asdict(o) for o in outcomes]}
        text = [f"{o.action:<8} {o.file} at {o.cgroup_root}: link {o.link_id}, {o.nr_files} files, "
                f"{o.nr_errors} errors (pinned at {o.pin})" for o in outcomes]
        return RunResult(0, doc, text)

    def verify(self, req: Request) -> Report:
        require_supported()
        return verify(req.layout.cgroup_root, req.selection, req.layout)

    def clean(self, req: Request) -> int:
        names = [s.name for s in req.specs] if req.programs_given else list(CATALOGUE)
        with rundir.exclusive(req.layout.bpffs, rundir.ROLE_CLEAN):  # refused while a `run` holds the bpffs
            return clean(req.layout, names)

    def status(self, req: Request) -> dict[str, Any]:
        """Every Approach 2 link (its files are in cgroupfs: `verify --approach 2` walks them)."""
        return {"approach_2": {"links": [link_doc(d) for d in libbpf.cgroupfs_stat_links()]}}
