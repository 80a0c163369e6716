"""Cardinality and workload labels on real cgroups: the layouts systemd and kubelet make (both cgroup drivers),
built under a private v2 subtree, mirrored by `run --once`, scraped from a real `bpffs-sync export`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest
from export_fixtures import start_exporter
from helpers import Mirror, mirror_on

UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CID = "3f" * 32
SYSTEMD_POD = f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice"
CGROUPFS_POD = f"kubepods/besteffort/pod{UID}"
HOSTILE_QUOTE = 'evil"q\\b.service'  # a quote and a backslash (cgroupfs refuses a newline)
HOSTILE_RAW = b"raw-\xff\x1b[2J.service"  # not UTF-8, and a terminal escape
LAYOUTS = [
    "system.slice/foo.service",
    f"{SYSTEMD_POD}/cri-containerd-{CID}.scope",
    f"{CGROUPFS_POD}/{CID}",
    f"system.slice/{HOSTILE_QUOTE}",
]
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture
def layouts(bpffs_mount: str, cgroup_root: str) -> Iterator[Mirror]:
    """Real cgroups in the common layouts (and two hostile names) mirrored by one `run --once`; the cgroups
    go with the private subtree, the mirror and run directory with mirror_on."""
    with mirror_on(bpffs_mount, cgroup_root) as m:
        for rel in LAYOUTS:
            os.makedirs(m.cg(rel))
        os.mkdir(os.path.join(os.fsencode(m.cg("system.slice")), HOSTILE_RAW))
        m.cli("run", "--once", check=True)
        yield m


def _series(body: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, labels) of every sample line of a text-format body."""
    out = []
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        labels = dict(_LABEL.findall(rest.rpartition("}")[0])) if rest else {}
        out.append((name.split(" ")[0], labels))
    return out


def _per_cgroup(body: str) -> Counter[tuple[str, str]]:
    """Series per (hierarchy, cgroup) label pair: what one cgroup costs."""
    return Counter((labels.get("hierarchy", ""), labels["cgroup"]) for _, labels in _series(body) if "cgroup" in labels)


def _scrape(m: Mirror, *args: str) -> str:
    exp = start_exporter(m.bpffs, m.run_dir, *args)
    try:
        return exp.scrape()
    finally:
        exp.stop()


def _labels_of(body: str, cgroup: str) -> dict[str, str]:
    """The labels of cgroup's _count series (the text-format escaped cgroup value)."""
    found = [
        labels
        for name, labels in _series(body)
        if name == "bpffs_sync_hist_oncpu_seconds_count" and labels.get("cgroup") == cgroup
    ]
    assert len(found) == 1, (cgroup, found)
    return found[0]


def test_default_scrape_costs_at_most_ten_series_per_cgroup(layouts: Mirror) -> None:
    """The real exporter's default /metrics: every mirrored cgroup (root, slices, pods, containers, hostile
    names) is there with 2 series, none with more than 10, and no bucket."""
    body = _scrape(layouts)
    per = _per_cgroup(body)
    assert ("", "/system.slice/foo.service") in per
    assert len(per) == 13  # the root, 4 systemd-driver levels, 4 cgroupfs-driver, system.slice and its 3
    assert max(per.values()) <= 10
    assert set(per.values()) == {2}
    assert "_bucket{" not in body


def test_buckets_are_an_opt_in_detail(layouts: Mirror) -> None:
    """--detail buckets: each cgroup's hist_oncpu is a histogram again, 26 bounds + +Inf + _sum + _count."""
    per = _per_cgroup(_scrape(layouts, "--detail", "buckets"))
    assert set(per.values()) == {29}


def test_workload_labels_from_real_paths(layouts: Mirror) -> None:
    """systemd unit + slice; a containerd container under the systemd driver and one under the cgroupfs
    driver: qos_class, pod_uid (dashed), container_id; the pod itself: qos_class and pod_uid."""
    body = _scrape(layouts)
    assert _labels_of(body, "/system.slice/foo.service") == {
        "cgroup": "/system.slice/foo.service",
        "unit": "foo.service",
        "slice": "system.slice",
    }
    container = f"/{SYSTEMD_POD}/cri-containerd-{CID}.scope"
    assert _labels_of(body, container) == {
        "cgroup": container,
        "qos_class": "burstable",
        "pod_uid": UID,
        "container_id": CID,
    }
    assert _labels_of(body, f"/{CGROUPFS_POD}/{CID}") == {
        "cgroup": f"/{CGROUPFS_POD}/{CID}",
        "qos_class": "besteffort",
        "pod_uid": UID,
        "container_id": CID,
    }
    assert _labels_of(body, f"/{SYSTEMD_POD}") == {
        "cgroup": f"/{SYSTEMD_POD}",
        "qos_class": "burstable",
        "pod_uid": UID,
    }


def test_hostile_names_are_escaped_and_get_no_workload_label(layouts: Mirror) -> None:
    """A quote and a backslash, and bytes that are not UTF-8 with a terminal escape: the cgroup label is
    printable.escape's text in the text format's escapes, each line one sample, and no unit label."""
    body = _scrape(layouts)
    quoted = '/system.slice/evil\\"q\\\\\\\\b.service'  # the backslash doubled by escape, then by the format
    assert _labels_of(body, quoted) == {"cgroup": quoted, "slice": "system.slice"}
    raw = "/system.slice/raw-\\\\xff\\\\x1b[2J.service"
    assert _labels_of(body, raw) == {"cgroup": raw, "slice": "system.slice"}
    assert "\x1b" not in body
    body.encode("utf-8", "strict")


def test_promtool_accepts_the_default_scrape(layouts: Mirror) -> None:
    """`promtool check metrics` finds nothing to say about a default scrape with workload labels and
    hostile names (summaries without quantiles are valid families)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (package prometheus)")
    res = subprocess.run(
        [promtool, "check", "metrics"], input=_scrape(layouts), capture_output=True, text=True, timeout=60, check=False
    )
    assert (res.returncode, res.stdout + res.stderr) == (0, "")
