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
  link there as `native_link`. The pin is what keeps the link (fds and pins keep a link, as for
  every link type; the files do not): the command exits and the files stay, and unpinning the
  last handle detaches the link and removes its files.
- verify() compares the files the kernel made with the cgroups each link's subtree holds.
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
from bpffs_sync.errors import EnvironmentProblem, KernelUnsupported, UsageError
from bpffs_sync.loader import Generations
from bpffs_sync.mirror import bpffs, cgroupfs
from bpffs_sync.mirror.diff import diff
from bpffs_sync.mirror.drift import Report
from bpffs_sync.mirror.tree import Actual, Conflict, Desired, DesiredTree, Kind
from bpffs_sync.paths import Layout, RelPath
from bpffs_sync.programs import CATALOGUE, StatProgram

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


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What ensure_link found and did for one stat."""

    stat: str
    action: str  # created | adopted | updated (program swapped, files kept)
    link_id: int
    pin: str
    nr_files: int
    nr_errors: int
    collector_adopted: bool


def pin_verdict(kind: str, desc: libbpf.CgroupStatLinkDesc | None, name: str, root_id: int) -> str:
    """The pinned object, opened and described: PIN_OURS (this stat's live link at root_id) or
    PIN_OTHER (a prog or map, another link type, a detached link, another stat or another root)."""
    if kind != "link" or desc is None or desc.cgroup_id == 0:
        return PIN_OTHER
    return PIN_OURS if desc.name == name and desc.cgroup_id == root_id else PIN_OTHER


class KernelMirror(StatLink):
    """One stat's Approach 1 link: its files in the bpffs mirror, pinned as `native_link`."""

    exists_hint = "another link already makes files of this name (`bpffs-sync clean --kernel` detaches it)"

    def _create(self, prog_fd: int, cgroup_fd: int, name: str | None) -> int:
        return libbpf.link_create_cgroup_stat(prog_fd, cgroup_fd, name)

    def _describe(self, fd: int, what: str) -> libbpf.CgroupStatLinkDesc | None:
        return libbpf.cgroup_stat_link_info(fd, what)

    def _ours(self, desc: LinkDesc, root_id: int, hierarchy_id: int) -> bool:
        assert isinstance(desc, libbpf.CgroupStatLinkDesc)
        return pin_verdict("link", desc, self.spec.name, root_id) == PIN_OURS

    def pin_name(self, hierarchy_id: int) -> str:
        return A1_LINK_PIN

    @property
    def link_pin(self) -> str:
        return self.layout.private_path(self.spec.name, A1_LINK_PIN)

    def ensure_link(self, cgroup_dir: str) -> LinkOutcome:
        """The stat's link at cgroup_dir (statlink.StatLink._ensure), pinned at link_pin."""
        action, desc, pin = self._ensure(cgroup_dir)
        assert isinstance(desc, libbpf.CgroupStatLinkDesc)
        return LinkOutcome(self.spec.name, action, desc.link_id, pin, desc.nr_files, desc.nr_errors,
                           self.stat.collector_adopted)


def attach_stats(layout: Layout, specs: Iterable[StatProgram], force_raw_tp: bool = False) -> list[LinkOutcome]:
    """`bpffs-sync run --kernel`: enable the mirror on layout.bpffs and make sure each stat has its
    link at layout.cgroup_root. One pass, then the kernel keeps the tree; rerunning is a no-op."""
    require_supported()
    enable_mirror(layout.bpffs)
    outcomes = []
    for spec in specs:
        with KernelMirror(layout, spec, force_raw_tp) as km:
            outcomes.append(km.ensure_link(layout.cgroup_root))
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
    return {"id": desc.link_id, "name": desc.name, "cgroup_id": desc.cgroup_id, "nr_files": desc.nr_files,
            "nr_errors": desc.nr_errors}


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
    """The kernel's mirror at <bpffs>/cgroup against cgroupfs, on the same path as the user-space
    verify: desired (for each cgroup stat link, its file in every cgroup of its subtree, and the
    directories down to them) diffed against actual (a walk of the mirror, each file read for the
    cgroup it serves). Plus per-link checks a walk cannot make: the root is a cgroup we see, the
    link's nr_files equals the files found, our stats' links run the current program."""
    layout = Layout(bpffs_dir, _cgroup2_root(cgroup_root))
    links = libbpf.cgroup_stat_links()
    everything = cgroupfs.walk(layout, ())
    where = {cgid: rel for rel, cgid in everything.ids.items()}
    problems: list[str] = []
    roots: dict[RelPath, list[libbpf.CgroupStatLinkDesc]] = {}
    for desc in links:
        if desc.cgroup_id == 0:  # detached, kept alive by an fd: makes no files
            continue
        root = where.get(desc.cgroup_id)
        if root is None:
            problems.append(f"link {desc.link_id} ({desc.name}): root cgroup {desc.cgroup_id} is not under "
                            f"{layout.cgroup_root}")
            continue
        roots.setdefault(root, []).append(desc)
    desired, conflicts, owner = _kernel_desired(sorted(everything.ids), everything.ids, roots)
    opaque = set(everything.opaque) | {c.path for c in conflicts}
    actual = bpffs.walk(layout, read_file_identity)
    opaque |= actual.opaque
    plan = diff(desired, actual.tree, conflicts, opaque, check_access=False)
    found = {rel for rel, have in actual.tree.items() if have.kind is Kind.PIN and rel in owner}
    for desc in links:
        made = sum(1 for rel in found if owner[rel] == desc.link_id)
        if desc.cgroup_id and desc.cgroup_id in where and made != desc.nr_files:
            problems.append(f"link {desc.link_id} ({desc.name}): nr_files {desc.nr_files}, {made} files found")
    problems += _stale_programs(layout, links)
    cgroups = sum(1 for want in desired.values() if want.kind is Kind.DIR)
    files = sum(1 for have in actual.tree.values() if have.kind is Kind.PIN)
    return Report(layout, plan, cgroups, files, link_problems=problems,
                  extra={"approach": "kernel", "links": [link_doc(d) for d in links]})


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


# --- the backend -----------------------------------------------------------------------------------


class KernelA1(Backend):
    """The kernel-approach1 series keeps the tree: run attaches one link per stat and returns."""

    mode = "kernel"
    refuses: ClassVar[dict[str, str]] = {
        "run --once": "the kernel keeps the tree: run attaches the links and exits",
        "run --no-watch": "the kernel keeps the tree: nothing to watch",
        "run --resync-interval": "the kernel keeps the tree: nothing to resync",
        "run --v1": "the kernel series mirrors cgroup v2 only",
        "verify --v1": "the kernel series mirrors cgroup v2 only",
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
        outcomes = attach_stats(req.layout, req.specs, force_raw_tp=req.run.force_raw_tp)
        doc = {"mirror_root": req.layout.mirror_root, "cgroup_root": req.layout.cgroup_root,
               "links": [asdict(o) for o in outcomes]}
        text = [f"{o.action:<8} {o.stat}: link {o.link_id}, {o.nr_files} files, {o.nr_errors} errors "
                f"(pinned at {o.pin})" for o in outcomes]
        return RunResult(0, doc, text)

    def verify(self, req: Request) -> Verdict:
        require_supported()
        return verify(req.layout.bpffs, req.layout.cgroup_root)

    def clean(self, req: Request) -> int:
        names = [s.name for s in req.specs] if req.programs_given else list(CATALOGUE)
        with rundir.exclusive(req.layout.bpffs, rundir.ROLE_CLEAN):  # refused while a `run` holds the bpffs
            return clean(req.layout, names)

    def status(self, req: Request) -> dict[str, Any]:
        """Is this bpffs the mirror's instance, every Approach 1 link, and the files in <bpffs>/cgroup."""
        links = libbpf.cgroup_stat_links()
        names = frozenset(d.name for d in links)
        return {"kernel": {"mirror_enabled": mirror_enabled(req.layout.bpffs), "links": [link_doc(d) for d in links]},
                "mirror": bpffs.count_tree(req.layout.bpffs, req.layout.mirror_parts, names | frozenset(CATALOGUE))}
