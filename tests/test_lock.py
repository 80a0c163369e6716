"""The lock: one resolution (requirements/dev.lock) that every install path uses, its runtime subset
(requirements/runtime.lock) pinned identically, and bounds in pyproject.toml that the lock satisfies."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*\\?$")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def parse_lock(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, sha256 hashes) of a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    name = ""
    version = ""
    hashes: set[str] = set()
    for line in [*text.splitlines(), "end==0"]:
        if (m := _PIN.match(line)) is not None:
            if name:
                pins[name] = (version, frozenset(hashes))
            name, version, hashes = canonicalize_name(m[1]), m[2], set()
        else:
            hashes.update(_HASH.findall(line))
    pins.pop("end", None)
    return pins


def _lock(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    return parse_lock((REPO / "requirements" / name).read_text(encoding="utf-8"))


def _declared() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return ([Requirement(r) for r in project["dependencies"]],
            {extra: [Requirement(r) for r in reqs] for extra, reqs in project["optional-dependencies"].items()})


def test_parse_lock() -> None:
    text = "a-b==1.0 \\\n    --hash=sha256:" + "1" * 64 + " \\\n    --hash=sha256:" + "2" * 64 + "\n    # via x\nc==2\n"
    assert parse_lock(text) == {"a-b": ("1.0", frozenset({"1" * 64, "2" * 64})), "c": ("2", frozenset())}


def test_every_pin_is_hashed() -> None:
    for name in ("dev.lock", "runtime.lock"):
        unhashed = [pkg for pkg, (_v, hashes) in _lock(name).items() if not hashes]
        assert unhashed == [], f"{name}: no hash for {unhashed}"


@pytest.mark.parametrize("subset", ["runtime.lock", "lab.lock"])
def test_subset_locks_are_the_same_resolution(subset: str) -> None:
    dev, part = _lock("dev.lock"), _lock(subset)
    differ = {pkg: (pin, dev.get(pkg)) for pkg, pin in part.items() if dev.get(pkg) != pin}
    assert differ == {}


def test_the_agent_has_only_its_own_dependencies() -> None:
    """The node agent's lock holds what the agent needs (and theirs), none of the lab's packages."""
    runtime, extras = _declared()
    agent = _lock("runtime.lock")
    assert {canonicalize_name(r.name) for r in runtime} <= set(agent)
    assert not {canonicalize_name(r.name) for r in extras["lab"]} & set(agent)


def test_pyproject_bounds_hold_for_the_lock() -> None:
    runtime, extras = _declared()
    everything = runtime + [r for reqs in extras.values() for r in reqs]
    for reqs, lock in ((runtime, _lock("runtime.lock")), (runtime + extras["lab"], _lock("lab.lock")),
                       (everything, _lock("dev.lock"))):
        for req in reqs:
            name = canonicalize_name(req.name)
            assert name in lock, f"{req} is not locked"
            assert req.specifier.contains(lock[name][0], prereleases=True), f"lock pins {name}=={lock[name][0]}, " \
                f"outside pyproject's {req}"


def test_every_install_path_uses_the_lock() -> None:
    deps = (REPO / "scripts" / "install-deps.sh").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements/dev.lock" in deps
    assert re.search(r"stamp=.*requirements/dev\.lock", deps), "the venv must be rebuilt when the lock changes"
    container = (REPO / "packaging" / "Containerfile").read_text(encoding="utf-8")
    assert "--require-hashes" in container and "requirements/runtime.lock" in container
    make = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes" in make and "requirements/runtime.lock" in make
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "pip install --require-hashes -r requirements/runtime.lock" in readme


@pytest.mark.skipif(os.environ.get("BPFFS_SYNC_LATEST") == "1",
                    reason="make test-latest runs on the newest releases, not the lock")
def test_this_venv_is_the_lock() -> None:
    """The venv the suite runs in holds exactly the locked versions (install-deps rebuilds it when the lock
    changes), so a developer's machine tests what a fresh one installs."""
    wrong = {}
    for pkg, (version, _hashes) in _lock("dev.lock").items():
        try:
            have = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            have = "missing"
        if have != version:
            wrong[pkg] = (version, have)
    assert wrong == {}
