"""The kernel's own mirror (kernel-approach1/): cgroup stat links on a patched kernel.

There the kernel keeps `<bpffs>/cgroup/<path>/<name>` in step with cgroupfs itself, so user space
only attaches one link per stat (KernelMirror.attach) and checks the result (verify). Nothing
here runs per cgroup: no watcher, no reconciler.

- supported(): the running kernel has the series: BPF_PROG_TYPE_CGROUP_STAT and bpffs's cgroup_mirror
  option in its BTF (series.carried()).
- The mirror lives in the bpffs instance mounted with `-o cgroup_mirror` (one per system: another
  is refused with EBUSY); enable_mirror() remounts a bpffs with it.
- attach() loads the stat's `.stat.bpf.o` as BPF_PROG_TYPE_CGROUP_STAT with its collector, shares
  the stats map pinned under <bpffs>/bpffs-sync/<stat>/ with the user-space mirror, and pins the
  link there as `native_link` (v2) or `native_link_h<hierarchy id>` (a v1 hierarchy). The pin is
  what keeps the link (fds and pins keep a link, as for every link type; the files do not): the
  command exits and the files stay, and unpinning the last handle detaches the link and removes
  its files.
- cgroup v1 (patch 9): a link rooted at a v1 cgroup mirrors its subtree in
  <bpffs>/cgroup-v1/<hierarchy>/<path from the hierarchy's root>/, with a symlink
  cgroup-v1/<controller> -> <hierarchy> per co-mounted controller, the layout of the user-space
  mirror (../shared/DESIGN.md section 1). `run --kernel --v1 SEL` attaches, per selected
  hierarchy, its controllers' default stats (forest.Selection, v1_controllers) at its root or the
  selected cgroup. A link's hierarchy is in its fdinfo only (libbpf.link_fdinfo): a v1 root's
  cgroup id is unique only within its hierarchy, so adoption and verify match (id, hierarchy).
- verify() compares the files the kernel made with the cgroups each link's subtree holds, one
  tree per hierarchy (verify_tree), on the user-space mirror's diff; `--v1` adds the top of
  cgroup-v1/ (hierarchy directories, controller symlinks) in the same ForestReport.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from bpffs_sync import libbpf, rundir, series
from bpffs_sync.backends import sharing
from bpffs_sync.backends.base import Backend, Request, RunResult, Verdict
from bpffs_sync.backends.statlink import (
    PIN_OTHER,
    PIN_OURS,
    LinkDesc,
    StatLink,
    file_cgroup_id,
)
from bpffs_sync.errors import EnvironmentProblem, KernelUnsupported, Tampered, UsageError
from bpffs_sync.loader import Generations
from bpffs_sync.mirror import bpffs, cgroupfs, forest
from bpffs_sync.mirror.diff import diff
from bpffs_sync.mirror.drift import ForestReport, Report
from bpffs_sync.mirror.tree import Actual, Conflict, Desired, DesiredTree, Kind
from bpffs_sync.paths import MIRROR_V1, MIRROR_V2, Layout, RelPath
from bpffs_sync.programs import CATALOGUE, StatProgram, lookup

A1_LINK_PIN = sharing.A1_LINK_PIN
MIRROR_OPTION = sharing.MIRROR_OPTION
mirror_enabled = sharing.mirror_enabled


def supported() -> bool:
    """Does the running kernel carry the series: cgroup stat links and the bpffs mirror (series.py)?"""
    return series.carried().approach1


def require_supported() -> None:
    if not supported():
        raise KernelUnsupported("cgroup stat link", "/sys/kernel/btf/vmlinux", errno.EOPNOTSUPP,
                                "kernel lacks BPF_PROG_TYPE_CGROUP_STAT or bpffs's cgroup_mirror "
                                "(kernel-approach1 series)")


def enable_mirror(bpffs_dir: str) -> None:
    """Remount the bpffs at bpffs_dir with cgroup_mirror (the kernel then makes <bpffs>/cgroup)."""
    if mirror_enabled(bpffs_dir):
        return
    res = subprocess.run(["mount", "-o", f"remount,{MIRROR_OPTION}", bpffs_dir],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0 or not mirror_enabled(bpffs_dir):
        hint = ("EEXIST: an entry named `cgroup` is in the way (a user-space mirror? `bpffs-sync clean`); "
                "EBUSY: another bpffs instance holds the mirror (v3 refuses a second one; find it with "
                "`grep cgroup_mirror /proc/self/mountinfo` and remount it nocgroup_mirror, or use it)")
        raise EnvironmentProblem("remount cgroup_mirror", bpffs_dir, 0,
                                 f"{res.stderr.strip() or 'option not taken'} ({hint})")


def pin_name(hierarchy_id: int) -> str:
    """The link pin in the stat's private directory: `native_link` (v2), `native_link_h<id>` (v1)."""
    return sharing.link_pin(A1_LINK_PIN, hierarchy_id)


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What ensure_link found and did for one stat on one hierarchy."""

    stat: str
    action: str  # created | adopted | updated (program swapped, files kept)
    link_id: int
    pin: str
    nr_files: int
    nr_errors: int
    collector_adopted: bool
    cgroup_root: str = ""  # the link's root cgroup directory
    hierarchy_id: int = 0  # its hierarchy: 0 is v2
    tree: str = MIRROR_V2  # where its files are, below the bpffs: cgroup, cgroup-v1/<hierarchy>


def pin_verdict(kind: str, desc: libbpf.CgroupStatLinkDesc | None, name: str, root_id: int,
                hierarchy_id: int = 0) -> str:
    """The pinned object, opened and described: PIN_OURS (this stat's live link at root_id on that
    hierarchy) or PIN_OTHER (a prog or map, another link type, a detached link, another stat, or
    another root: a cgroup of another hierarchy with an equal id included)."""
    if kind != "link" or desc is None or desc.cgroup_id == 0:
        return PIN_OTHER
    ours = desc.name == name and desc.cgroup_id == root_id and desc.hierarchy_id == hierarchy_id
    return PIN_OURS if ours else PIN_OTHER


def link_flags(spec: StatProgram, write_flag: int | None = None) -> int:
    """The link_create.cgroup_stat.flags a stat's links are made with: BPF_F_CGROUP_STAT_WRITE (this
    kernel's number, write_flag or else its BTF's: series.uapi()) for a knob, whose files take
    writes (13/15); none for any other stat, whose files refuse them (EPERM)."""
    if not spec.knob:
        return 0
    flag = write_flag if write_flag is not None else series.uapi().write_flag
    if flag is None:
        raise KernelUnsupported("cgroup stat link", spec.name, errno.EOPNOTSUPP,
                                f"a knob: the kernel's BTF has no {series.WRITE_FLAG} (kernel-approach1 13/15)")
    return flag


class KernelMirror(StatLink):
    """One stat's Approach 1 link per hierarchy: its files in the bpffs mirror, pinned as
    `native_link` (v2) or `native_link_h<id>` (a v1 hierarchy). flags: the link's
    link_create.cgroup_stat.flags (default link_flags(spec): only a knob's files take writes); a
    pinned link made with other flags is not adopted."""

    exists_hint = "another link already makes files of this name (`bpffs-sync clean --kernel` detaches it)"

    def __init__(self, layout: Layout, spec: StatProgram, force_raw_tp: bool = False,
                 flags: int | None = None) -> None:
        super().__init__(layout, spec, force_raw_tp)
        self.flags = link_flags(spec) if flags is None else flags

    def _create(self, prog_fd: int, cgroup_fd: int, name: str | None) -> int:
        return libbpf.link_create_cgroup_stat(prog_fd, cgroup_fd, name, flags=self.flags)

    def _describe(self, fd: int, what: str) -> libbpf.CgroupStatLinkDesc | None:
        return libbpf.cgroup_stat_link_info(fd, what)

    def _ours(self, desc: LinkDesc, root_id: int, hierarchy_id: int) -> bool:
        assert isinstance(desc, libbpf.CgroupStatLinkDesc)
        return (pin_verdict("link", desc, self.spec.name, root_id, hierarchy_id) == PIN_OURS
                and desc.flags == self.flags)

    def pin_name(self, hierarchy_id: int) -> str:
        return pin_name(hierarchy_id)

    @property
    def link_pin(self) -> str:
        """The v2 link's pin."""
        return self.layout.private_path(self.spec.name, A1_LINK_PIN)

    def ensure_link(self, cgroup_dir: str, hierarchy_id: int = 0, tree: str = MIRROR_V2) -> LinkOutcome:
        """The stat's link at cgroup_dir on that hierarchy (statlink.StatLink._ensure), pinned as
        pin_name(hierarchy_id); tree: where its files are (for the outcome)."""
        action, desc, pin = self._ensure(cgroup_dir, hierarchy_id)
        assert isinstance(desc, libbpf.CgroupStatLinkDesc)
        return LinkOutcome(self.spec.name, action, desc.link_id, pin, desc.nr_files, desc.nr_errors,
                           self.stat.collector_adopted, cgroup_dir, hierarchy_id, tree)


@dataclass(frozen=True, slots=True)
class Target:
    """Where links go: a cgroup directory, its hierarchy, the mirror tree its files land in, the stats."""

    cgroup_root: str
    hierarchy_id: int
    tree: str
    stats: tuple[StatProgram, ...]


def targets(layout: Layout, specs: Iterable[StatProgram], trees: Iterable[forest.Tree] = ()) -> list[Target]:
    """The v2 root with specs, then each `--v1` tree (forest.resolve_now) at its root (the
    hierarchy's, or the selected cgroup) with its controllers' default stats."""
    out = [Target(layout.cgroup_root, 0, MIRROR_V2, tuple(specs))]
    for t in trees:
        assert t.hierarchy is not None
        out.append(Target(t.layout.cgroup_root, t.hierarchy.hierarchy_id, t.key, tuple(lookup(s) for s in t.stats)))
    return out


def attach_stats(layout: Layout, specs: Iterable[StatProgram], force_raw_tp: bool = False,
                 selection: forest.Selection | None = None) -> list[LinkOutcome]:
    """`bpffs-sync run --kernel [--v1 ...]`: enable the mirror on layout.bpffs and make sure each
    stat has its link at layout.cgroup_root, and each `--v1` tree's stats theirs at its root. One
    pass, then the kernel keeps the trees; rerunning is a no-op."""
    require_supported()
    trees = forest.resolve_now(selection, layout) if selection is not None else []
    enable_mirror(layout.bpffs)
    outcomes = []
    for target in targets(layout, specs, trees):
        for spec in target.stats:
            with KernelMirror(layout, spec, force_raw_tp) as km:
                outcomes.append(km.ensure_link(target.cgroup_root, target.hierarchy_id, target.tree))
    return outcomes


def clean(layout: Layout, names: Iterable[str]) -> int:
    """`bpffs-sync clean --kernel`: detach the links making files of these names (ours or not), then
    drop our link pins, and each stat's private directory (its map and collector) unless another
    mode uses it (sharing.remove_own). The kernel removes the files; <bpffs>/cgroup stays with the instance."""
    stats = list(names)
    detached = detach_all(stats)
    return detached + sharing.remove_own(layout, sharing.APPROACH_1, stats, A1_LINK_PIN)


def detach_all(names: Iterable[str] | None = None) -> int:
    """BPF_LINK_DETACH every cgroup stat link (or those whose file name is in names); returns how many."""
    wanted = set(names) if names is not None else None
    return libbpf.detach_links(d.link_id for d in libbpf.cgroup_stat_links() if wanted is None or d.name in wanted)


# --- verify --------------------------------------------------------------------------------------


def link_doc(desc: libbpf.CgroupStatLinkDesc) -> dict[str, Any]:
    """A cgroup stat link as `verify --kernel --json` and `status --json` show it."""
    uapi = series.carried().uapi
    write_flag = uapi.write_flag if uapi is not None else None
    return {"id": desc.link_id, "name": desc.name, "cgroup_id": desc.cgroup_id, "hierarchy_id": desc.hierarchy_id,
            "nr_files": desc.nr_files, "nr_errors": desc.nr_errors, "flags": desc.flags,
            "writable": write_flag is not None and bool(desc.flags & write_flag)}


def read_file_identity(dir_fd: int, name: str, what: str, st: os.stat_result) -> Actual:
    """The FileJudge of the kernel's mirror: the cgroup a kernel-made file names when read
    (statlink.file_cgroup_id). A file of another program says nothing we can check: its identity
    is unknown, not wrong; one that cannot be opened or read is not a working stat file."""
    got = file_cgroup_id(dir_fd, name)
    if isinstance(got, str):
        return Actual(Kind.OTHER, detail=got)
    return Actual(Kind.PIN, cgroup_id=got) if got >= 0 else Actual(Kind.PIN, known=False)


def _cgroup2_root(cgroup_root: str) -> str:
    """The kernel mirrors the whole v2 hierarchy: paths are relative to its mount's root."""
    mount = bpffs.mount_of(cgroup_root)
    if mount is None or mount.fstype != "cgroup2":
        raise UsageError("verify --kernel", cgroup_root, 0, "not on a cgroup2 mount")
    return mount.mount_point


def verify(bpffs_dir: str, cgroup_root: str) -> Report:
    """The kernel's v2 mirror at <bpffs>/cgroup against cgroupfs (verify_tree)."""
    return verify_tree(Layout(bpffs_dir, _cgroup2_root(cgroup_root)), libbpf.cgroup_stat_links())


def verify_tree(layout: Layout, links: list[libbpf.CgroupStatLinkDesc]) -> Report:
    """One hierarchy's tree of the kernel's mirror (layout: the v2 one, or Layout.for_v1 at the
    hierarchy's mount) against cgroupfs, on the same path as the user-space verify: desired (for
    each link on this hierarchy, its file in every cgroup of its subtree, and the directories down
    to them) diffed against actual (a walk of the mirror, each file read for the cgroup it serves).
    Plus per-link checks a walk cannot make: the root is a cgroup we see, the link's nr_files
    equals the files found, our stats' links run the current program. Links of other hierarchies
    are not this tree's: cgroup ids repeat across hierarchies."""
    mine = [d for d in links if d.hierarchy_id == layout.hierarchy_id]  # a detached link says 0: v2's list
    everything = cgroupfs.walk(layout, ())
    where = {cgid: rel for rel, cgid in everything.ids.items()}
    problems: list[str] = []
    roots: dict[RelPath, list[libbpf.CgroupStatLinkDesc]] = {}
    for desc in mine:
        if desc.cgroup_id == 0:  # detached, kept alive by an fd: makes no files
            continue
        root = where.get(desc.cgroup_id)
        if root is None:
            problems.append(f"link {desc.link_id} ({desc.name}): root cgroup {desc.cgroup_id} is not under "
                            f"{layout.cgroup_root}")
            continue
        roots.setdefault(root, []).append(desc)
    desired, conflicts, owner = _kernel_desired(sorted(everything.ids), everything.ids, roots)
    if layout.hierarchy_id and not owner:  # a v1 hierarchy's directory exists while a link's file is in it
        desired.pop((), None)
    opaque = set(everything.opaque) | {c.path for c in conflicts}
    actual = bpffs.walk(layout, read_file_identity)
    opaque |= actual.opaque
    plan = diff(desired, actual.tree, conflicts, opaque, check_access=False)
    found = {rel for rel, have in actual.tree.items() if have.kind is Kind.PIN and rel in owner}
    for desc in mine:
        made = sum(1 for rel in found if owner[rel] == desc.link_id)
        if desc.cgroup_id and desc.cgroup_id in where and made != desc.nr_files:
            problems.append(f"link {desc.link_id} ({desc.name}): nr_files {desc.nr_files}, {made} files found")
    problems += _stale_programs(layout, mine)
    uapi = series.carried().uapi
    problems += flag_problems(mine, uapi.write_flag if uapi is not None else None)
    cgroups = sum(1 for want in desired.values() if want.kind is Kind.DIR)
    files = sum(1 for have in actual.tree.values() if have.kind is Kind.PIN)
    return Report(layout, plan, cgroups, files, link_problems=problems,
                  extra={"approach": "kernel", "links": [link_doc(d) for d in mine]})


def top_drift(trees: list[forest.Tree], linked: set[int], actual: dict[str, str | None],
              prune: bool) -> list[forest.TopDrift]:
    """The top of the kernel's cgroup-v1/ (pure): the kernel keeps a hierarchy's directory and its
    controller symlinks while a live link on it holds an entry, so a selected hierarchy with a link
    (its id in `linked`) must have them, and one without must not. `prune` (`--v1 all`): any
    other entry is stale too (forest.top_diff)."""
    with_links = [t for t in trees if t.hierarchy is not None and t.hierarchy.hierarchy_id in linked]
    want = forest.top_desired(with_links)
    drift = forest.top_diff(want, actual, prune)
    if not prune:
        unlinked = forest.top_desired([t for t in trees if t not in with_links])
        drift += [forest.TopDrift(name, "stale") for name in sorted(unlinked) if name in actual and name not in want]
    return drift


def verify_v1(base: Layout, selection: forest.Selection) -> ForestReport:
    """`verify --kernel --v1 SEL`: each selected hierarchy's tree (verify_tree at the hierarchy's
    mount: the kernel names paths from the hierarchy's root, a selected cgroup only chooses where
    `run` roots the links) and the top of cgroup-v1/, in the user-space mirror's ForestReport."""
    trees = forest.resolve_now(selection, base)
    links = libbpf.cgroup_stat_links()
    reports = []
    for t in trees:
        assert t.hierarchy is not None
        layout = Layout.for_v1(base, t.hierarchy.mount_point, t.hierarchy.name, t.hierarchy.hierarchy_id)
        reports.append(verify_tree(layout, links))
    linked = {d.hierarchy_id for d in links if d.cgroup_id}
    top = top_drift(trees, linked, forest.top_actual(base.bpffs), prune=forest.ALL in selection.selectors)
    return ForestReport(base.bpffs, top, reports)


def _kernel_desired(cgroups: list[RelPath], ids: dict[RelPath, int],
                    roots: dict[RelPath, list[libbpf.CgroupStatLinkDesc]]) -> tuple[
                        DesiredTree, list[Conflict], dict[RelPath, int]]:
    """What the kernel's rule makes of the cgroups (sorted, parents first): each cgroup gets the file
    of every link rooted at it or above, and the directories down to it. A cgroup whose name is the
    file of a link covering its parent collides with that file in the kernel's directory: whichever
    came first stayed (the kernel counts the other in nr_errors), so that name and everything below it
    are a conflict the diff leaves alone. Returns (desired, conflicts, file -> link id)."""
    desired: DesiredTree = {(): Desired(Kind.DIR)}
    conflicts: list[Conflict] = []
    owner: dict[RelPath, int] = {}
    covering: dict[RelPath, list[libbpf.CgroupStatLinkDesc]] = {}
    blocked: set[RelPath] = set()
    for rel in cgroups:
        if rel and (rel[:-1] in blocked or (rel[:-1] not in covering and rel[:-1] in blocked)):
            blocked.add(rel)
            continue
        above = covering.get(rel[:-1], []) if rel else []
        if rel and rel[-1] in {d.name for d in above}:
            conflicts.append(Conflict(rel, ids[rel]))
            blocked.add(rel)
            continue
        here = above + roots.get(rel, [])
        covering[rel] = here
        if not here:
            continue
        for depth in range(len(rel) + 1):
            desired[rel[:depth]] = Desired(Kind.DIR)
        for desc in here:
            desired[(*rel, desc.name)] = Desired(Kind.PIN, ids[rel], desc.name)
            owner[(*rel, desc.name)] = desc.link_id
    return desired, conflicts, owner


def _stale_programs(layout: Layout, links: list[libbpf.CgroupStatLinkDesc]) -> list[str]:
    """Links of our stats (catalogued names) whose program does not use the stats map pinned now."""
    specs = [CATALOGUE[d.name] for d in links if d.name in CATALOGUE]
    gens = Generations.from_pins(layout, specs)
    return [f"link {d.link_id} ({d.name}): runs program {d.prog_id}, not the current generation "
            "(`bpffs-sync run --kernel` swaps it)"
            for d in links if d.name in CATALOGUE and gens.map_ids.get(d.name) is not None
            and not gens.judge(d.name, d.prog_id)]


def flag_problems(links: list[libbpf.CgroupStatLinkDesc], write_flag: int | None) -> list[str]:
    """Live links of our stats made with other flags than link_flags() says (a knob whose files
    refuse writes, or another stat's files that take them); pure. write_flag: this kernel's
    BPF_F_CGROUP_STAT_WRITE, None without one (then nothing of a knob can be judged)."""
    out = []
    for d in links:
        spec = CATALOGUE.get(d.name)
        if spec is None or not d.cgroup_id or (spec.knob and write_flag is None):
            continue
        want = link_flags(spec, write_flag)
        if d.flags == want:
            continue
        says = "take no writes" if spec.knob else "take writes"
        out.append(f"link {d.link_id} ({d.name}): its files {says} (flags {d.flags:#x}, want "
                   f"{want:#x}; `bpffs-sync run --kernel --program {d.name}` replaces it)")
    return out


# --- the backend -----------------------------------------------------------------------------------


class KernelA1(Backend):
    """The kernel-approach1 series keeps the trees: run attaches one link per stat and hierarchy and returns."""

    mode = "kernel"
    refuses: ClassVar[dict[str, str]] = {
        "run --once": "the kernel keeps the tree: run attaches the links and exits",
        "run --no-watch": "the kernel keeps the tree: nothing to watch",
        "run --resync-interval": "the kernel keeps the tree: nothing to resync",
        "verify --program": "verify checks every cgroup stat link the kernel has",
        "run --file-mode": "the kernel sets the files' mode by its own rule",
        "run --file-group": "the kernel sets the files' owner by its own rule",
        "verify --file-mode": "the kernel sets the files' mode by its own rule",
        "verify --file-group": "the kernel sets the files' owner by its own rule",
    }

    @classmethod
    def require(cls) -> None:
        require_supported()

    def run(self, req: Request) -> RunResult:
        outcomes = attach_stats(req.layout, req.specs, force_raw_tp=req.run.force_raw_tp, selection=req.selection)
        doc = {"mirror_root": req.layout.mirror_root, "cgroup_root": req.layout.cgroup_root,
               "links": [asdict(o) for o in outcomes]}
        text = [f"{o.action:<8} {o.stat}: link {o.link_id}, {o.nr_files} files, {o.nr_errors} errors (pinned at "
                f"{o.pin})" + (f"; {o.tree}, rooted at {o.cgroup_root}" if o.hierarchy_id else "") for o in outcomes]
        if req.selection is not None:
            bare = [t for t in forest.resolve_now(req.selection, req.layout) if not t.stats]
            doc["v1_without_stats"] = [t.key for t in bare]
            text += [f"no stats  {t.key}: its controllers have no default stat, so no link and no files "
                     "(the kernel mirrors only where a link is)" for t in bare]
        return RunResult(0, doc, text)

    def verify(self, req: Request) -> Verdict:
        require_supported()
        if req.selection is not None:
            return verify_v1(req.layout, req.selection)
        return verify(req.layout.bpffs, req.layout.cgroup_root)

    def clean(self, req: Request) -> int:
        """Every hierarchy's links of the stats (all catalogued ones unless --program), and their pins."""
        names = [s.name for s in req.specs] if req.programs_given else list(CATALOGUE)
        with rundir.exclusive(req.layout.bpffs, rundir.ROLE_CLEAN):  # refused while a `run` holds the bpffs
            return clean(req.layout, names)

    def status(self, req: Request) -> dict[str, Any]:
        """Is this bpffs the mirror's instance, every Approach 1 link, the files in <bpffs>/cgroup, and
        per hierarchy its links and what its tree holds (hierarchy_status)."""
        links = libbpf.cgroup_stat_links()
        names = frozenset(d.name for d in links)
        enabled = mirror_enabled(req.layout.bpffs)
        return {"kernel": {"mirror_enabled": enabled, "links": [link_doc(d) for d in links],
                           **hierarchy_status(req.layout, links, enabled)},
                "mirror": bpffs.count_tree(req.layout.bpffs, req.layout.mirror_parts, names | frozenset(CATALOGUE))}


def hierarchy_rows(links: list[libbpf.CgroupStatLinkDesc], names: dict[int, str]) -> list[dict[str, Any]]:
    """Per hierarchy with a live link (and v2 always), pure: its name (`names`: id -> the mounted
    hierarchy's; "" when not mounted here), its tree below the bpffs (None when unknown), its links,
    and the files and errors they count."""
    live: dict[int, list[libbpf.CgroupStatLinkDesc]] = {0: []}
    for d in links:
        if d.cgroup_id:
            live.setdefault(d.hierarchy_id, []).append(d)
    rows = []
    for hid, descs in sorted(live.items()):
        name = names.get(hid, "")
        tree = MIRROR_V2 if hid == 0 else f"{MIRROR_V1}/{name}" if name else None
        rows.append({"hierarchy_id": hid, "hierarchy": name if hid else "", "tree": tree, "links": len(descs),
                     "link_ids": sorted(d.link_id for d in descs), "nr_files": sum(d.nr_files for d in descs),
                     "nr_errors": sum(d.nr_errors for d in descs)})
    return rows


def hierarchy_status(layout: Layout, links: list[libbpf.CgroupStatLinkDesc], enabled: bool) -> dict[str, Any]:
    """`status --kernel`'s per-hierarchy part: hierarchy_rows, each with the directories and stat
    files its tree holds when this bpffs is the mirror's instance, and the controller symlinks of
    cgroup-v1/."""
    rows = hierarchy_rows(links, {h.hierarchy_id: h.name for h in forest.hierarchies()})
    stats = frozenset(d.name for d in links) | frozenset(CATALOGUE)
    doc: dict[str, Any] = {"hierarchies": rows, "v1_symlinks": {}}
    if not enabled:  # another instance's trees, or a user-space mirror's: not the kernel's to count
        return doc
    try:
        for row in rows:
            if row["tree"] is not None:
                row.update(bpffs.count_tree(layout.bpffs, tuple(row["tree"].split("/", 1)), stats))
        doc["v1_symlinks"] = {n: t for n, t in sorted(forest.top_actual(layout.bpffs).items()) if t}
    except Tampered as err:  # not the kernel's (a planted entry): shown, not fatal
        doc["not_ours"] = f"{err.path}: {err.detail}"
    return doc
