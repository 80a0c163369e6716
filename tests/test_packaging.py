"""Packaging: the systemd units verify, the DaemonSet validates against the Kubernetes schema (offline),
both grant the capabilities the daemon was measured to need, the daemon works with exactly those,
and the wheel carries the BPF objects and its version."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO, Mirror

UNITS = REPO / "packaging" / "systemd"
DAEMONSET = REPO / "packaging" / "kubernetes" / "daemonset.yaml"


def _unit_caps(unit: str) -> set[str]:
    text = (UNITS / unit).read_text(encoding="utf-8")
    line = re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M)
    assert line is not None
    return {c.removeprefix("CAP_") for c in line.group(1).split()}


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(DAEMONSET.read_text(encoding="utf-8")) if d]


def _kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in _docs() if d["kind"] == kind]
    return doc


def _pod() -> dict[str, Any]:
    pod: dict[str, Any] = _kind("DaemonSet")["spec"]["template"]["spec"]
    return pod


def _containers() -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in _pod()["containers"]}


def _volumes() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _pod()["volumes"]}


def _arg(container: dict[str, Any], flag: str) -> str:
    args: list[str] = container["args"]
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("unit", ["bpffs-sync.service", "bpffs-sync-export.service"])
def test_systemd_unit_verifies(unit: str) -> None:
    """`systemd-analyze verify` passes without a word (an unknown key is only a warning: stderr must be empty)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze")
    with tempfile.TemporaryDirectory() as tmp:
        text = (UNITS / unit).read_text(encoding="utf-8")
        # verify wants ExecStart's binary to exist: point it at this checkout's entry point.
        Path(tmp, unit).write_text(text.replace("/usr/local/bin/bpffs-sync", shutil.which("bpffs-sync")
                                                or str(Path(sys.executable).parent / "bpffs-sync")))
        res = subprocess.run(["systemd-analyze", "verify", str(Path(tmp, unit))], capture_output=True, text=True,
                             timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""


def test_daemonset_validates_against_the_kubernetes_schema() -> None:
    """The DaemonSet and its ServiceAccount are valid (strict: no unknown fields) for Kubernetes 1.30 through the
    newest shipped schema."""
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    docs = _docs()
    assert sorted(d["kind"] for d in docs) == ["DaemonSet", "ServiceAccount"]
    for doc in docs:
        for version in ("1.30.0", latest_version()):
            kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_daemonset_grants_what_the_units_grant() -> None:
    """Each container adds exactly its unit's capabilities and drops the rest."""
    containers = _containers()
    for name, unit in (("mirror", "bpffs-sync.service"), ("exporter", "bpffs-sync-export.service")):
        caps = containers[name]["securityContext"]["capabilities"]
        assert caps["drop"] == ["ALL"]
        assert set(caps.get("add", [])) == _unit_caps(unit)


def test_exporter_is_unprivileged() -> None:
    """The exporter: no capability (here and in its unit), not root, nothing writable, its own PID namespace."""
    assert _unit_caps("bpffs-sync-export.service") == set()
    exporter = _containers()["exporter"]
    ctx = exporter["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
    assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
    assert "add" not in ctx["capabilities"]
    assert all(m.get("readOnly") for m in exporter["volumeMounts"])
    assert not _pod().get("shareProcessNamespace") and not _pod().get("hostPID")


def test_exporter_reads_the_tree_where_its_bpffs_says() -> None:
    """The exporter's mirror volume is the host bpffs's `cgroup` tree, mounted at <its --bpffs>/cgroup (systemd
    mounts /sys/fs/bpf mode 0700: a non-root exporter cannot enter it), and it binds the pod's own address."""
    exporter, volumes = _containers()["exporter"], _volumes()
    (mount,) = [m for m in exporter["volumeMounts"] if m["mountPath"] != "/run/bpffs-sync"]
    assert mount["mountPath"] == _arg(exporter, "--bpffs") + "/cgroup"
    assert volumes[mount["name"]]["hostPath"]["path"] == volumes["bpffs"]["hostPath"]["path"] + "/cgroup"
    assert _arg(exporter, "--address") == "$(POD_IP)"
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in exporter["env"]


def test_both_containers_have_probes_and_resources() -> None:
    """Liveness and readiness on both; CPU and memory requests and a memory limit on both."""
    for name, c in _containers().items():
        assert "livenessProbe" in c and "readinessProbe" in c, name
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
        assert "memory" in c["resources"]["limits"], name


def test_probes_ask_what_the_exporter_answers(tmp_path: Path) -> None:
    """The exporter's httpGet paths answer 200 on a running exporter; the mirror's exec probe is `export --check`,
    which exits 1 (unhealthy, not a usage error) with no daemon."""
    import threading
    import urllib.request

    from bpffs_sync.export.server import Exporter, ExportOptions, make_server

    opts = ExportOptions(bpffs=str(tmp_path), cgroup_root=None, port=0, verify_interval=0)
    server = make_server(opts, Exporter(opts))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        exporter = _containers()["exporter"]
        for probe in ("livenessProbe", "readinessProbe"):
            url = f"http://127.0.0.1:{server.server_address[1]}{exporter[probe]['httpGet']['path']}"
            with urllib.request.urlopen(url, timeout=30) as resp:
                assert resp.status == 200
    finally:
        server.shutdown()
        server.server_close()
    mirror = _containers()["mirror"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        cmd = mirror[probe]["exec"]["command"]
        assert cmd[0] == "bpffs-sync" and cmd[1:3] == ["export", "--check"]
        args = [str(tmp_path) if a == "/host/bpffs" else a for a in cmd[1:]]
        res = subprocess.run([sys.executable, "-m", "bpffs_sync", *args], capture_output=True, text=True,
                             env={**os.environ, "BPFFS_SYNC_RUN_DIR": str(tmp_path / "run")}, timeout=60, check=False)
        assert (res.returncode, res.stdout) == (1, "no bpffs-sync run holds this bpffs\n"), res.stderr


def test_service_account_without_a_token() -> None:
    """A dedicated ServiceAccount; neither it nor the pod mounts an API token."""
    sa = _kind("ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert _pod()["serviceAccountName"] == sa["metadata"]["name"]
    assert _pod()["automountServiceAccountToken"] is False


def test_nodes_need_btf() -> None:
    """Scheduled only on nodes labelled with BTF (Node Feature Discovery's kernel-config key), and the pod does
    not start where /sys/kernel/btf/vmlinux is not a file."""
    terms = _pod()["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert all({"key": "feature.node.kubernetes.io/kernel-config.DEBUG_INFO_BTF", "operator": "In",
                "values": ["true"]} in t["matchExpressions"] for t in terms)
    assert _volumes()["btf"]["hostPath"] == {"path": "/sys/kernel/btf/vmlinux", "type": "File"}


def test_podmonitor_scrapes_the_exporter() -> None:
    """The PodMonitor selects the DaemonSet's pods in its namespace, on the exporter's named port."""
    mon = yaml.safe_load((DAEMONSET.parent / "podmonitor.yaml").read_text(encoding="utf-8"))
    ds = _kind("DaemonSet")
    assert mon["kind"] == "PodMonitor"
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert mon["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert mon["spec"]["namespaceSelector"]["matchNames"] == [ds["metadata"]["namespace"]]
    ports = {p["name"] for p in _containers()["exporter"]["ports"]}
    assert {e["port"] for e in mon["spec"]["podMetricsEndpoints"]} <= ports


def test_daemon_needs_no_more_than_the_unit_grants(mirror: Mirror) -> None:
    """Under the unit's capability bounding set, run --once mirrors a tree, and a second run adopts its
    pins (same inode); without CAP_SYS_ADMIN the second run re-pins every file."""
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv (util-linux)")
    os.makedirs(mirror.cg("jobs/a.b"))
    caps = ",".join(f"+{c.lower()}" for c in sorted(_unit_caps("bpffs-sync.service")))
    cmd = ["setpriv", f"--bounding-set=-all,{caps}", "--inh-caps=-all", sys.executable, "-m", "bpffs_sync",
           "--log-format", "json", "run", *mirror.args(), "--once"]
    env = {**os.environ, **mirror.env}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    pinned = os.stat(mirror.stat_path("jobs/a.b")).st_ino
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    assert os.stat(mirror.stat_path("jobs/a.b")).st_ino == pinned, second.stderr


@pytest.fixture(scope="module")
def wheel() -> Any:
    """The wheel as `pip wheel .` builds it (BPF objects compiled by setup.py), in a temp dir."""
    if shutil.which("clang") is None or not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("building the wheel needs clang and BTF")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src")
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", "build", ".git", "*.egg-info",
                                                                 "__pycache__", ".*_cache", "reports"))
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                              "-w", str(Path(tmp, "dist")), str(src)], capture_output=True, text=True, timeout=600,
                             check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        (whl,) = Path(tmp, "dist").glob("bpffs_sync-*.whl")
        yield whl


def test_wheel_tag_names_the_bpf_objects_architecture(wheel: Path) -> None:
    """The objects are compiled for x86 (-D__TARGET_ARCH_x86): not an any-platform wheel."""
    assert wheel.name.endswith("-py3-none-linux_x86_64.whl"), wheel.name


def test_wheel_ships_the_bpf_objects(wheel: Path) -> None:
    """The wheel holds every catalogued stat's object (iterator and cgroup/stat builds)."""
    from bpffs_sync.programs import CATALOGUE

    names = set(zipfile.ZipFile(wheel).namelist())
    for spec in CATALOGUE.values():
        assert f"bpffs_sync/bpf_objects/{spec.object_file}" in names
        assert f"bpffs_sync/bpf_objects/{spec.object_file.replace('.bpf.o', '.stat.bpf.o')}" in names


def test_installed_wheel_finds_its_objects_and_version(wheel: Path) -> None:
    """Installed from the wheel: --version is the project's version and the objects are the packaged ones."""
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    with tempfile.TemporaryDirectory() as target:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, str(wheel)],
                       check=True, capture_output=True, timeout=300)
        env = {k: v for k, v in os.environ.items() if k != "BPFFS_SYNC_BPF_DIR"}
        env["PYTHONPATH"] = target
        res = subprocess.run([sys.executable, "-c",
                              "import sys; from bpffs_sync import cli, programs; print(programs.object_dir()); "
                              "sys.argv = ['bpffs-sync', '--version']; cli.main()"],
                             capture_output=True, text=True, env=env, cwd=target, timeout=60, check=False)
    lines = res.stdout.splitlines()
    assert lines[0] == os.path.join(target, "bpffs_sync", "bpf_objects")
    assert lines[1] == f"bpffs-sync {version}"


def test_wheel_carries_the_labs_sources(wheel: Path) -> None:
    """What the report and `bench sync` compile at run time is package data (setup.py copies it)."""
    from bpffs_sync.measure.toolchain import IN_CHECKOUT

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"bpffs_sync/measure/csrc/{n}" for n in IN_CHECKOUT} <= names


def _site_files(venv: Path) -> set[str]:
    (site,) = venv.glob("lib/python3*/site-packages")
    return {str(p.relative_to(site)) for p in site.rglob("*") if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def lab_venv(wheel: Path) -> Any:
    """A fresh venv as the README installs the lab: requirements/lab.lock with hashes, then the wheel without
    its dependencies (the lock holds the agent's and the lab extra's packages)."""
    with tempfile.TemporaryDirectory(prefix="bpffs-sync-lab-") as tmp:
        venv = Path(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        for args in (["--require-hashes", "-r", str(REPO / "requirements" / "lab.lock")], ["--no-deps", str(wheel)]):
            res = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=900, check=False)
            assert res.returncode == 0, res.stderr
        yield venv


def _lab_cli(venv: Path, tmp: Path, *argv: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed entry point, run from outside the checkout with the checkout off sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BPFFS_SYNC_BPF_DIR", "VIRTUAL_ENV")}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env["PATH"] = path if path is not None else f"{venv / 'bin'}:{os.environ.get('PATH', '')}"
    return subprocess.run([str(venv / "bin" / "bpffs-sync"), *argv], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=1200, check=False)


@pytest.mark.timeout(1800)
def test_lab_report_runs_from_its_install(lab_venv: Path, tmp_path: Path) -> None:
    """report --quick from the lab's install (issue 21's Done-when): exit 0, its files written, its native parts
    compiled into the user's cache (vmlinux.h generated there from BTF), nothing written into site-packages."""
    for tool in ("clang", "gcc", "bpftool"):
        if shutil.which(tool) is None:
            pytest.skip(f"the report compiles its C loop and BPF object at run time: no {tool}")
    before = _site_files(lab_venv)
    res = _lab_cli(lab_venv, tmp_path, "report", "--quick", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    for name in ("report.md", "report.html", "results.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert {"readloop", "stat_by_id.bpf.o", "vmlinux.h"} <= {
        p.name for p in (tmp_path / "cache" / "bpffs-sync" / "report").iterdir()}
    assert _site_files(lab_venv) == before


def test_lab_bench_from_its_install(lab_venv: Path, tmp_path: Path) -> None:
    """bench --help works from the install; without a compiler on PATH, `bench sync` and `report` are one line
    naming the missing tool, exit 2, nothing written into site-packages."""
    res = _lab_cli(lab_venv, tmp_path, "bench", "--help")
    assert res.returncode == 0 and "usage: bpffs-sync bench" in res.stdout, res.stderr
    before = _site_files(lab_venv)
    bare = str(lab_venv / "bin")  # the venv only: no gcc, cc, clang or bpftool
    for argv, missing in ((["bench", "sync", "--count", "10"], "gcc or cc"),
                          (["report", "--quick", "--out", str(tmp_path / "out")], "clang")):
        res = _lab_cli(lab_venv, tmp_path, *argv, path=bare)
        assert res.returncode == 2, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and f"needs {missing}, not found on PATH" in lines[0], res.stderr
        assert "Traceback" not in res.stderr
    assert _site_files(lab_venv) == before
