"""Loaded stat programs: the shared map pinned, one collector attached (or adopted), the reader
ready to serve per-cgroup pins. This is the stock-kernel Pinner of DESIGN.md §3.

Generation: a per-cgroup pin is current when its program is the stat's reader *and* uses the
map pinned now (map ids are checked, so pins left by a daemon whose map was replaced are found).
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field

from . import bpffs, libbpf, log
from .errors import CgroupGone, LibbpfError, translate_oserror
from .paths import Layout
from .programs import StatProgram, object_path

_log = log.get(__name__)
COLLECTOR_PIN = "collector"


def _pinned_map_id(path: str) -> int | None:
    try:
        return libbpf.pinned_map_info(path).map_id
    except LibbpfError:
        return None


@dataclass(slots=True)
class Generations:
    """Which programs are current, per stat. Built from the pinned maps, so any process (the
    daemon, `verify`) reaches the same verdict from kernel state alone."""

    map_ids: dict[str, int | None]
    _cache: dict[int, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    @classmethod
    def from_pins(cls, layout: Layout, specs: list[StatProgram]) -> Generations:
        return cls({s.name: _pinned_map_id(layout.private_path(s.name, s.stats_map)) for s in specs})

    def judge(self, stat: str, prog_id: int) -> bool:
        if stat not in self.map_ids:
            return False
        desc = self._cache.get(prog_id)
        if desc is None:
            try:
                info = libbpf.prog_info_by_id(prog_id)
            except LibbpfError:
                return False
            desc = (info.name, info.map_ids)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[prog_id] = desc
        name, map_ids = desc
        want = self.map_ids[stat]
        return name == stat[: libbpf.BPF_OBJ_NAME_LEN - 1] and (want is None or want in map_ids)


class LoadedStat:
    """One stat program loaded for a mirror. close() releases our fds; pins stay."""

    def __init__(self, layout: Layout, spec: StatProgram, force_raw_tp: bool = False) -> None:
        self.layout = layout
        self.spec = spec
        self.collector = self._choose_collector(force_raw_tp)
        self.obj = self._load()
        self.map_fd = self.obj.map_fd(spec.stats_map)
        self.map_id = libbpf.map_info(self.map_fd, spec.stats_map).map_id
        self.reader = self.obj.program(spec.name)
        self.collector_adopted = self._ensure_collector()

    def _choose_collector(self, force_raw_tp: bool) -> str:
        for c in self.spec.collectors:
            if force_raw_tp and c.probe_typedef is not None:
                continue
            if c.probe_typedef is None or libbpf.vmlinux_has_typedef(c.probe_typedef):
                return c.program
        return self.spec.collectors[-1].program

    def _open(self) -> libbpf.BpfObject:
        obj = libbpf.BpfObject(object_path(self.spec))
        try:
            obj.set_map_pin_path(self.spec.stats_map, self.layout.private_path(self.spec.name, self.spec.stats_map))
            for c in self.spec.collectors:
                obj.program(c.program).set_autoload(c.program == self.collector)
            obj.load()
        except BaseException:
            obj.close()
            raise
        return obj

    def _load(self) -> libbpf.BpfObject:
        bpffs.mkdir(self.layout.private_root)
        bpffs.mkdir(self.layout.private_path(self.spec.name))
        try:
            return self._open()
        except LibbpfError as err:
            # A map pinned by an older, incompatible build: start a new generation.
            if err.errno != errno.EINVAL or not os.path.exists(self._map_pin()):
                raise
            _log.warning("stats_map_incompatible", stat=self.spec.name, path=self._map_pin(), error=str(err))
            bpffs.remove(self._map_pin())
            bpffs.remove(self._collector_pin())
            return self._open()

    def _map_pin(self) -> str:
        return self.layout.private_path(self.spec.name, self.spec.stats_map)

    def _collector_pin(self) -> str:
        return self.layout.private_path(self.spec.name, COLLECTOR_PIN)

    def _ensure_collector(self) -> bool:
        """Adopt the pinned collector if it feeds our map, else attach ours and pin it."""
        pin = self._collector_pin()
        if os.path.exists(pin):
            try:
                prog_id = libbpf.pinned_link_info(pin).prog_id
                if self.map_id in libbpf.prog_info_by_id(prog_id).map_ids:
                    return True
            except LibbpfError as err:
                _log.warning("collector_unreadable", stat=self.spec.name, path=pin, error=str(err))
            bpffs.remove(pin)
        with self.obj.program(self.collector).attach() as link:
            link.pin(pin)
        _log.info("collector_attached", stat=self.spec.name, program=self.collector, pin=pin)
        return False

    def pin_cgroup(self, cgroup_path: str, pin_path: str) -> int:
        """Pin a SELF_ONLY iterator for the cgroup at cgroup_path; returns the cgroup id served."""
        try:
            cg_fd = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise translate_oserror(err, "open cgroup", cgroup_path) from err
        try:
            cgid = os.fstat(cg_fd).st_ino
            with self.reader.attach_cgroup_iter(cg_fd, cgroup_path) as link:
                link.pin(pin_path)
            return cgid
        except LibbpfError as err:
            if err.errno == errno.ENOENT and not os.path.isdir(cgroup_path):
                raise CgroupGone("pin", cgroup_path, errno.ENOENT) from err
            raise
        finally:
            os.close(cg_fd)

    def forget_cgroup(self, cgroup_id: int) -> bool:
        """Drop the map entry of a removed cgroup (ids are never reused)."""
        return libbpf.map_delete(self.map_fd, struct.pack("=Q", cgroup_id), self.spec.stats_map)

    def close(self) -> None:
        self.obj.close()
