"""workload.workload_labels: the labels a cgroup path gives, for the layouts systemd and kubelet make, and none
for a name that only looks like one."""

from __future__ import annotations

import pytest

from bpffs_sync.export.workload import workload_labels

pytestmark = pytest.mark.unit

UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
UID_ = UID.replace("-", "_")
CID = "3f" * 32


def labels(path: str) -> dict[str, str]:
    return dict(workload_labels(path))


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/system.slice/foo.service", {"unit": "foo.service", "slice": "system.slice"}),
        ("/system.slice", {"slice": "system.slice"}),
        ("/system.slice/foo.service/worker", {"unit": "foo.service", "slice": "system.slice"}),
        ("/user.slice/user-1000.slice/session-3.scope", {"unit": "session-3.scope", "slice": "user-1000.slice"}),
        (
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-x.scope",
            {"unit": "app-gnome-x.scope", "slice": "app.slice"},
        ),
        (
            "/system.slice/system-getty.slice/getty@tty1.service",
            {"unit": "getty@tty1.service", "slice": "system-getty.slice"},
        ),
        (
            "/system.slice/systemd-cryptsetup@luks\\x2d1.service",
            {"unit": "systemd-cryptsetup@luks\\x2d1.service", "slice": "system.slice"},
        ),
        ("/init.scope", {"unit": "init.scope"}),
        ("/", {}),
        ("/jobs/a", {}),
    ],
)
def test_systemd_units_and_slices(path: str, want: dict[str, str]) -> None:
    """unit: the deepest .service/.scope; slice: the deepest .slice above it."""
    assert labels(path) == want


@pytest.mark.parametrize(
    ("path", "want"),
    [
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
            {"qos_class": "burstable", "pod_uid": UID, "container_id": CID},
        ),
        (
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{CID}.scope",
            {"qos_class": "besteffort", "pod_uid": UID, "container_id": CID},
        ),
        (
            f"/kubepods.slice/kubepods-pod{UID_}.slice/docker-{CID}.scope",
            {"qos_class": "guaranteed", "pod_uid": UID, "container_id": CID},
        ),
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice",
            {"qos_class": "burstable", "pod_uid": UID},
        ),
        ("/kubepods.slice/kubepods-burstable.slice", {"qos_class": "burstable"}),
        ("/kubepods.slice", {}),
        (
            f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
            f"kubelet-kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
            {"qos_class": "burstable", "pod_uid": UID, "container_id": CID},
        ),
        (f"/kubepods/burstable/pod{UID}/{CID}", {"qos_class": "burstable", "pod_uid": UID, "container_id": CID}),
        (f"/kubepods/besteffort/pod{UID}/{CID}", {"qos_class": "besteffort", "pod_uid": UID, "container_id": CID}),
        (f"/kubepods/pod{UID}/{CID}", {"qos_class": "guaranteed", "pod_uid": UID, "container_id": CID}),
        (f"/kubepods/pod{UID}", {"qos_class": "guaranteed", "pod_uid": UID}),
        ("/kubepods/burstable", {"qos_class": "burstable"}),
    ],
)
def test_kubepods_both_drivers(path: str, want: dict[str, str]) -> None:
    """systemd and cgroupfs drivers (and kind's nested kubelet slice): qos_class, pod_uid (dashed), container_id."""
    assert labels(path) == want


def test_labels_come_in_a_fixed_order() -> None:
    """qos_class, pod_uid, container_id, unit, slice: a series' label order does not depend on the path."""
    assert [k for k, _ in workload_labels(f"/kubepods/burstable/pod{UID}/{CID}")] == [
        "qos_class",
        "pod_uid",
        "container_id",
    ]
    assert [k for k, _ in workload_labels("/system.slice/a.service")] == ["unit", "slice"]


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ('/system.slice/evil"x.service', {"slice": "system.slice"}),
        ("/system.slice/evil\nx.service", {"slice": "system.slice"}),
        ("/system.slice/raw-" + b"\xff".decode("utf-8", "surrogateescape") + ".service", {"slice": "system.slice"}),
        ("/system.slice/é.service", {"slice": "system.slice"}),
        ("/system.slice/" + "a" * 300 + ".service", {"slice": "system.slice"}),
        (f"/kubepods/burstable/pod{UID}x/{CID}", {"qos_class": "burstable"}),
        (f"/kubepods/burstable/pod{UID}/{CID[:-1]}", {"qos_class": "burstable", "pod_uid": UID}),
        (f"/kubepods/burstable/pod{UID}/{CID.upper()}", {"qos_class": "burstable", "pod_uid": UID}),
        (
            f'/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}".scope',
            {"qos_class": "guaranteed", "pod_uid": UID},
        ),
    ],
)
def test_hostile_names_get_no_workload_label(path: str, want: dict[str, str]) -> None:
    """A name that is not the form it claims (quote, newline, non-UTF-8, non-ASCII, too long, a uid or
    id one character off) sets no label; the rest of the path still does."""
    assert labels(path) == want


def test_a_delegated_subtree_cannot_pass_for_a_pod() -> None:
    """kubepods below a .service or .scope (a delegated subtree, named by its user) is not Kubernetes."""
    path = f"/user.slice/user-1000.slice/user@1000.service/kubepods/burstable/pod{UID}/{CID}"
    assert labels(path) == {"unit": "user@1000.service", "slice": "user-1000.slice"}
    scoped = f"/system.slice/docker-{CID}.scope/kubepods.slice/kubepods-pod{UID_}.slice"
    assert labels(scoped) == {"unit": f"docker-{CID}.scope", "slice": "system.slice"}
