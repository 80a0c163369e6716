"""Workload labels from a cgroup's path: which systemd unit, or which Kubernetes pod and container, it is.

cAdvisor's users get container labels instead of paths; these are the same joins, read from the path alone
(no runtime socket, no API server). Two layouts are recognised; any other path gets no workload label.

- **Kubernetes** (kubelet's two cgroup drivers, and a kubelet that nests them, as kind does with
  `kubelet.slice/kubelet-kubepods.slice/...`):
      systemd:  kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/
                    cri-containerd-<id>.scope          (also crio-<id>.scope, docker-<id>.scope)
                kubepods.slice/kubepods-pod<uid>.slice/...   (Guaranteed pods sit directly under kubepods)
      cgroupfs: kubepods/burstable/pod<uid>/<id>      kubepods/pod<uid>/<id>
  -> `qos_class` (guaranteed, burstable, besteffort), `pod_uid` (dashed, as the API shows it),
     `container_id` (the runtime's 64-hex id, without the runtime's prefix).
- **systemd** (any other path): `unit` = the deepest `.service` or `.scope` component, `slice` = the deepest
  `.slice` component above it (or the deepest slice, for a slice itself).
      system.slice/foo.service                 -> unit="foo.service", slice="system.slice"
      user.slice/user-1000.slice/user@1000.service/app.slice/x.scope -> unit="x.scope", slice="app.slice"

Validation, not only escaping: a label is set only when its text has the form it claims -- a pod uid is a
UUID, a container id 64 hex digits, a unit or slice name systemd's unit-name characters (ASCII letters,
digits, `:-_.\\@`, at most 255) -- so a hostile name (quotes, newlines, bytes that are not UTF-8) never
becomes a workload label; it keeps only its `cgroup` label, which is escaped (render.label_value).

Trust: labels say what the path says. Whoever may mkdir in a delegated subtree may name a cgroup
`foo.service`, so the Kubernetes layout is recognised only where no `.service` or `.scope` component lies
above the `kubepods` one (systemd delegates subtrees at services and scopes): a user's
`user@1000.service/kubepods/pod.../...` does not pass for a pod. The price: a kubelet nested in a container
that systemd put in a scope (kind seen from its host: `system.slice/docker-<id>.scope/kubelet.slice/...`)
gets no pod labels from the host's exporter; it gets `unit="docker-<id>.scope"`.
"""

from __future__ import annotations

import re
from functools import lru_cache

LABELS = ("qos_class", "pod_uid", "container_id", "unit", "slice")  # every label this module may set

_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_QOS = r"(?P<qos>burstable|besteffort)"
# systemd driver: `[<prefix>-]kubepods[-<qos>][-pod<uid>].slice`, e.g. kubelet-kubepods-burstable-pod<uid>.slice
_KUBE_SLICE = re.compile(rf"(?:[a-z0-9]+-)*kubepods(?:-{_QOS})?(?:-pod(?P<uid>{_UID}))?\.slice", re.ASCII)
_CONTAINER = re.compile(r"(?:(?:cri-containerd|crio|docker)-)?(?P<id>[0-9a-f]{64})(?:\.scope)?", re.ASCII)
_POD_DIR = re.compile(rf"pod(?P<uid>{_UID})", re.ASCII)  # cgroupfs driver
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]{1,255}", re.ASCII)  # systemd's unit-name characters
_DELEGATED = (".service", ".scope")


def _kube_systemd(parts: tuple[str, ...], at: int) -> dict[str, str] | None:
    """parts[at] is a kubepods slice: walk down its nested slices, then a container scope."""
    labels: dict[str, str] = {}
    i = at
    while i < len(parts) and (m := _KUBE_SLICE.fullmatch(parts[i])):
        if m["qos"]:
            labels["qos_class"] = m["qos"]
        if m["uid"]:
            labels["pod_uid"] = m["uid"].replace("_", "-")
            labels.setdefault("qos_class", "guaranteed")
            i += 1
            break
        i += 1
    if "pod_uid" in labels and i < len(parts) and (c := _CONTAINER.fullmatch(parts[i])):
        labels["container_id"] = c["id"]
    return labels


def _kube_cgroupfs(parts: tuple[str, ...], at: int) -> dict[str, str]:
    """parts[at] == `kubepods`: [<qos>/]pod<uid>/<container id>."""
    labels: dict[str, str] = {}
    i = at + 1
    if i < len(parts) and parts[i] in ("burstable", "besteffort"):
        labels["qos_class"] = parts[i]
        i += 1
    if i < len(parts) and (m := _POD_DIR.fullmatch(parts[i])):
        labels["pod_uid"] = m["uid"].replace("_", "-")
        labels.setdefault("qos_class", "guaranteed")
        i += 1
        if i < len(parts) and (c := _CONTAINER.fullmatch(parts[i])):
            labels["container_id"] = c["id"]
    return labels


def _systemd(parts: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    unit_at = -1
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].endswith(_DELEGATED):
            unit_at = i
            break
    for i in range(unit_at if unit_at >= 0 else len(parts), 0, -1):
        if parts[i - 1].endswith(".slice"):
            if _UNIT_NAME.fullmatch(parts[i - 1]):
                labels["slice"] = parts[i - 1]
            break
    if unit_at >= 0 and _UNIT_NAME.fullmatch(parts[unit_at]):
        labels["unit"] = parts[unit_at]
    return labels


@lru_cache(maxsize=16384)
def workload_labels(path: str) -> tuple[tuple[str, str], ...]:
    """(label, value) pairs for a cgroup path (`/system.slice/foo.service`; `/` is the root), in LABELS'
    order; () when the path has no recognised layout. Values are validated text (see the module doc),
    still to be escaped for the text format like any label value."""
    parts = tuple(p for p in path.split("/") if p)
    found: dict[str, str] | None = None
    for i, part in enumerate(parts):
        if part.endswith(_DELEGATED):
            break  # a delegated subtree cannot name a pod
        if part == "kubepods":
            found = _kube_cgroupfs(parts, i)
            break
        if _KUBE_SLICE.fullmatch(part):
            found = _kube_systemd(parts, i)
            break
    if found is None:
        found = _systemd(parts)
    return tuple((k, found[k]) for k in LABELS if k in found)
