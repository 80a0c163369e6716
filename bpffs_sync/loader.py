"""Loaded stat programs: the shared map pinned, one collector attached (or adopted), the reader
ready to serve per-cgroup pins. This is what pins the user-space mirror's files (docs/architecture.md, section 2).

Generation: a per-cgroup pin is current when its program is the stat's reader *and* uses the
map pinned now (map ids are checked, so pins left by a daemon whose map was replaced are found).

Stats maps are keyed by struct cg_key (bpf/stat_common.h): (hierarchy id, pad, cgroup id), so
one loaded stat serves the v2 tree and any number of v1 hierarchies.

A stat with no collector (spec.stats_map is None: memcg_stat) is its reader alone: nothing is
pinned in its private directory (not even the directory), nothing is healed or forgotten, and
it has no generation: any program of its name is current (Generations.judge).

A reader in a sleepable section (iter.s/..., cgroup/stat.s) is loaded with BPF_F_SLEEPABLE, set
by hand (sleepable()): the system libbpf knows iter.s/ but not the patched kernel's cgroup/stat.s,
whose type the cgroup-stat load (cgroup_stat=True) sets by hand too.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import struct
from dataclasses import dataclass, field

from bpffs_sync import btf, libbpf, log
from bpffs_sync.errors import CgroupGone, LibbpfError
from bpffs_sync.mirror import bpffs
from bpffs_sync.paths import PRIVATE_DIR, Layout
from bpffs_sync.programs import Collector, StatProgram, object_path, require_kfuncs

_log = log.get(__name__)
COLLECTOR_PIN = "collector"
_KEY = struct.Struct("=IIQ")  # struct cg_key


def cg_key(hierarchy_id: int, cgroup_id: int) -> bytes:
    return _KEY.pack(hierarchy_id, 0, cgroup_id)


def collector_pins(spec: StatProgram) -> list[str]:
    """Pin names of a stat's collector programs: collector, collector1, ... (one per program; none
    for a stat with no collector)."""
    n = max((len(c.programs) for c in spec.collectors), default=0)
    return [COLLECTOR_PIN + (str(i) if i else "") for i in range(n)]


def sleepable(section: str) -> bool:
    """Is a program of this ELF section sleepable, by libbpf's naming: a `.s` on the program type
    (iter.s/cgroup, fentry.s/..., lsm.s/...) or on a section that is one word after the type
    (cgroup/stat.s)?"""
    kind, _, rest = section.partition("/")
    return kind.endswith(".s") or (rest.endswith(".s") and "/" not in rest)


def _removed(cgroup_fd: int) -> bool:
    """Is the cgroup open at cgroup_fd removed (a removed kernfs directory has no entries left)?"""
    try:
        os.stat("cgroup.procs", dir_fd=cgroup_fd)
    except FileNotFoundError:
        return True
    return False


def private_dir(layout: Layout, stat: str, create: bool) -> int | None:
    """<bpffs>/bpffs-sync/<stat>, every level ours (root's, writable by nobody else: dirfd.owned_dir),
    made when absent and `create`. None when absent. The caller closes the fd."""
    return bpffs.open_sub(layout.bpffs, (PRIVATE_DIR, stat), create, layout.bpffs_dev)


def _info_at(dir_fd: int, name: str, what: str, link: bool) -> libbpf.LinkDesc | libbpf.MapDesc:
    """link_info/map_info of the object pinned as `name` (a regular file, never a symlink)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as err:
        raise LibbpfError("bpf_obj_get", what, err.errno or 0) from err
    if not stat_mod.S_ISREG(st.st_mode):
        raise LibbpfError("bpf_obj_get", what, errno.EINVAL, "not a pinned object")
    fd = libbpf.obj_get_at(dir_fd, name, what)
    try:
        return libbpf.link_info(fd, what) if link else libbpf.map_info(fd, what)
    finally:
        os.close(fd)


def pinned_map_id(layout: Layout, spec: StatProgram) -> int | None:
    """The id of the stats map pinned for spec, None when there is none (or spec has no map)."""
    if spec.stats_map is None:
        return None
    fd = private_dir(layout, spec.name, create=False)
    if fd is None:
        return None
    try:
        info = _info_at(fd, spec.stats_map, layout.private_path(spec.name, spec.stats_map), link=False)
    except LibbpfError:
        return None
    finally:
        os.close(fd)
    assert isinstance(info, libbpf.MapDesc)
    return info.map_id


def collector_problem(layout: Layout, spec: StatProgram, map_id: int | None) -> str | None:
    """None when the pinned collector links form one current collector: every pin is there, one
    program feeds the stats map `map_id`, and every other shares a map with it (its generation's
    private state, e.g. memcg_histo's reclaim start times). Else what is wrong, in one line. None
    for a stat with no collector: nothing can be wrong with it."""
    names = collector_pins(spec)
    if not names:
        return None
    first = layout.private_path(spec.name, names[0])
    dfd = private_dir(layout, spec.name, create=False)
    if dfd is None:
        return f"no collector link pinned at {first}"
    maps: list[set[int]] = []
    try:
        for name in names:
            pin = layout.private_path(spec.name, name)
            try:
                info = _info_at(dfd, name, pin, link=True)
                assert isinstance(info, libbpf.LinkDesc)
                maps.append(set(libbpf.prog_info_by_id(info.prog_id).map_ids))
            except LibbpfError as err:
                return f"no collector link pinned at {pin}" if err.op == "bpf_obj_get" else str(err)
    finally:
        os.close(dfd)
    feeders = [m for m in maps if map_id in m]
    if not feeders:
        return f"collector at {first} does not feed the pinned stats map"
    if any(not m & feeders[0] for m in maps):
        return f"collector links next to {first} are not of one generation"
    return None


@dataclass(slots=True)
class Generations:
    """Which programs are current, per stat. Built from the pinned maps, so any process (the
    daemon, `verify`) reaches the same verdict from kernel state alone. A stat with no map (and no
    collector) has no generations: any program of its name is current."""

    map_ids: dict[str, int | None]
    _cache: dict[int, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    @classmethod
    def from_pins(cls, layout: Layout, specs: list[StatProgram]) -> Generations:
        return cls({s.name: pinned_map_id(layout, s) for s in specs})

    def judge(self, stat: str, prog_id: int) -> bool:
        if stat not in self.map_ids:
            return False
        desc = self._cache.get(prog_id)
        if desc is None:
            try:
                info = libbpf.prog_info_by_id(prog_id)
            except LibbpfError as err:
                if err.errno != errno.ENOENT:  # transient: not a verdict on the pin
                    raise
                return False
            desc = (info.name, info.map_ids)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[prog_id] = desc
        name, map_ids = desc
        want = self.map_ids[stat]
        return name == stat[: libbpf.BPF_OBJ_NAME_LEN - 1] and (want is None or want in map_ids)


class LoadedStat:
    """One stat program loaded for a mirror. close() releases our fds; pins stay.

    cgroup_stat: load the reader as BPF_PROG_TYPE_CGROUP_STAT (the patched kernel's cgroup stat link,
    kernel_a1.py) instead of as a cgroup iterator; the map and collector are shared the same way.

    A stat with no collector has collector None, map_fd and map_id None: its private directory is
    neither made nor written.
    """

    def __init__(self, layout: Layout, spec: StatProgram, force_raw_tp: bool = False,
                 cgroup_stat: bool = False) -> None:
        self.layout = layout
        self.spec = spec
        self.cgroup_stat = cgroup_stat
        require_kfuncs(spec)  # before any load: one line, not the verifier's log
        self.collector = self._choose_collector(force_raw_tp)
        self.map_fd: int | None = None
        self.map_id: int | None = None
        self.collector_adopted = False
        if spec.stats_map is None:
            self._dir = -1
            self.obj = self._open()
            self.reader = self.obj.program(spec.name)
            return
        dfd = private_dir(layout, spec.name, create=True)
        assert dfd is not None
        # <bpffs>/bpffs-sync/<stat>, held while loading only: an fd held for the daemon's life would
        # make an administrator's umount of the bpffs EBUSY.
        self._dir = dfd
        try:
            self.obj = self._load(spec.stats_map)
            self.map_fd = self.obj.map_fd(spec.stats_map)
            self.map_id = libbpf.map_info(self.map_fd, spec.stats_map).map_id
            self.reader = self.obj.program(spec.name)
            self.collector_adopted = self._ensure_collector()
        except BaseException:
            if hasattr(self, "obj"):
                self.obj.close()
            raise
        finally:
            os.close(dfd)
            self._dir = -1

    def _choose_collector(self, force_raw_tp: bool) -> Collector | None:
        if not self.spec.collectors:
            return None
        for c in self.spec.collectors:
            if force_raw_tp and c.probe_typedef is not None:
                continue
            if c.probe_typedef is None:
                return c
            found = btf.vmlinux_or_none(typedefs=(c.probe_typedef,))
            if found is not None and c.probe_typedef in found.typedefs:
                return c
        return self.spec.collectors[-1]

    @property
    def collector_name(self) -> str:
        """The loaded collector's programs, joined by +; "" for a stat with no collector."""
        return "+".join(self.collector.programs) if self.collector is not None else ""

    def _open(self) -> libbpf.BpfObject:
        obj = libbpf.BpfObject(object_path(self.spec, self.cgroup_stat))
        try:
            if self.spec.stats_map is not None:
                # libbpf pins and reuses the map by path: give it one through our checked directory
                # fd, which no rename or symlink planted since can redirect.
                obj.set_map_pin_path(self.spec.stats_map, f"/proc/self/fd/{self._dir}/{self.spec.stats_map}")
            for c in self.spec.collectors:
                for prog in c.programs:
                    obj.program(prog).set_autoload(c is self.collector)
            reader = obj.program(self.spec.name)
            if self.cgroup_stat:
                reader.set_cgroup_stat()
            if sleepable(reader.section_name()):
                reader.set_flags(reader.flags() | libbpf.BPF_F_SLEEPABLE)
            obj.load()
        except BaseException:
            obj.close()
            raise
        return obj

    def _load(self, stats_map: str) -> libbpf.BpfObject:
        try:
            return self._open()
        except LibbpfError as err:
            # A map pinned by an older, incompatible build: start a new generation.
            if err.errno != errno.EINVAL or not self._exists(stats_map):
                raise
            _log.warning("stats_map_incompatible", stat=self.spec.name, path=self._what(stats_map), error=str(err))
            for name in (stats_map, *collector_pins(self.spec)):
                bpffs.remove_at(self._dir, name, self._what(name))
            return self._open()

    def _what(self, name: str) -> str:
        return self.layout.private_path(self.spec.name, name)

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self._dir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _ensure_collector(self) -> bool:
        """Adopt the pinned collector links if they are one current collector, else attach ours
        and pin them. All or nothing: a begin/end pair shares a private map of its generation."""
        names = collector_pins(self.spec)
        problem = collector_problem(self.layout, self.spec, self.map_id)
        if problem is None or self.collector is None:
            return True
        if any(self._exists(n) for n in names):
            _log.warning("collector_replaced", stat=self.spec.name, reason=problem)
        for name in names:
            bpffs.remove_at(self._dir, name, self._what(name))
        for prog, name in zip(self.collector.programs, names, strict=False):
            with self.obj.program(prog).attach() as link:
                link.pin_at(self._dir, name, self._what(name))
            _log.info("collector_attached", stat=self.spec.name, program=prog, pin=self._what(name))
        return False

    def pin_cgroup(self, cgroup_fd: int, dir_fd: int, name: str, what: str) -> int:
        """Pin a SELF_ONLY iterator for the cgroup open at cgroup_fd as `name` in the directory open
        at dir_fd; returns the cgroup id served."""
        cgid = os.fstat(cgroup_fd).st_ino
        try:
            link = self.reader.link_cgroup_iter(cgroup_fd, what)
        except LibbpfError as err:
            if err.errno == errno.ENOENT and _removed(cgroup_fd):
                raise CgroupGone("pin", what, errno.ENOENT) from err
            raise
        try:
            libbpf.obj_pin_at(link, dir_fd, name, what)
        finally:
            os.close(link)
        return cgid

    def heal(self) -> bool:
        """Level-triggered for the private state too: when the stats map's pin or the collector's
        are missing or not current (a bpffs unmounted and mounted again, hand-made damage), pin the
        map we hold again and attach a collector anew. True when something was repaired. A stat with
        no collector has nothing there: never repaired."""
        if self.spec.stats_map is None or self.map_fd is None:
            return False
        stats_map = self.spec.stats_map
        dfd = private_dir(self.layout, self.spec.name, create=True)
        assert dfd is not None
        self._dir = dfd
        try:
            repaired = False
            if pinned_map_id(self.layout, self.spec) != self.map_id:
                bpffs.remove_at(dfd, stats_map, self._what(stats_map))
                libbpf.obj_pin_at(self.map_fd, dfd, stats_map, self._what(stats_map))
                repaired = True
            if not self._ensure_collector():
                repaired = True
            if repaired:
                _log.warning("private_state_repaired", stat=self.spec.name)
            return repaired
        finally:
            os.close(dfd)
            self._dir = -1

    def rehome(self, layout: Layout) -> None:
        """Serve another bpffs instance (layout) with the programs and map already loaded: pin the
        map there and attach a collector (heal). The guest tests load a stat once per session this
        way: under the debug kernel one load (the verifier under KASAN, in TCG) takes minutes."""
        self.layout = layout
        self.heal()

    def forget_cgroup(self, hierarchy_id: int, cgroup_id: int) -> bool:
        """Drop the map entry of a removed cgroup (ids are not reused within a hierarchy); False
        with no map."""
        if self.map_fd is None or self.spec.stats_map is None:
            return False
        return libbpf.map_delete(self.map_fd, cg_key(hierarchy_id, cgroup_id), self.spec.stats_map)

    def forget_hierarchies_except(self, live: frozenset[int]) -> int:
        """Drop every entry of a v1 hierarchy not in `live` (a gone hierarchy's id may be reused by
        the next one mounted, whose cgroup ids start again at 1). Returns how many went (0 with no map)."""
        map_fd, stats_map = self.map_fd, self.spec.stats_map
        if map_fd is None or stats_map is None:
            return 0
        keys = [k for k in libbpf.map_keys(map_fd, _KEY.size, stats_map)
                if _KEY.unpack(k)[0] not in live and _KEY.unpack(k)[0] != 0]
        return sum(libbpf.map_delete(map_fd, k, stats_map) for k in keys)

    def close(self) -> None:
        self.obj.close()
