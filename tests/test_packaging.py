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


def _containers() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(DAEMONSET.read_text(encoding="utf-8"))
    return {c["name"]: c for c in doc["spec"]["template"]["spec"]["containers"]}


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
    """The DaemonSet is valid (strict: no unknown fields) for Kubernetes 1.30 through the newest shipped schema."""
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    doc = yaml.safe_load(DAEMONSET.read_text(encoding="utf-8"))
    for version in ("1.30.0", latest_version()):
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_daemonset_grants_what_the_units_grant() -> None:
    """Each container adds exactly its unit's capabilities and drops the rest."""
    containers = _containers()
    for name, unit in (("mirror", "bpffs-sync.service"), ("exporter", "bpffs-sync-export.service")):
        caps = containers[name]["securityContext"]["capabilities"]
        assert caps["drop"] == ["ALL"]
        assert set(caps["add"]) == _unit_caps(unit)


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
