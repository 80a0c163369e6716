#!/usr/bin/env bash
# Install what bpffs-sync needs on a Debian host, idempotently: system packages (only those
# missing; `apt-get update` only when something is), the Python venv in .venv, and the BPF objects.
# Usage: scripts/install-deps.sh [--kernel]   (--kernel adds the kernel-series toolchain)
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(clang llvm bpftool libbpf1 libbpf-dev make python3-venv)
pkgs+=(prometheus) # tests only: a real Prometheus scrapes `bpffs-sync export` (tests/test_export_prometheus.py)
if [[ ${1:-} == --kernel ]]; then
	pkgs+=(flex bison libelf-dev libssl-dev zlib1g-dev pkg-config dwarves bc qemu-system-x86 ccache cpio rsync
		busybox-static zstd util-linux python3-ply python3-git)
	# the series' selftests (kernel-approach1/scripts/selftests.sh): test_progs and its BPF programs
	pkgs+=(clang-19 llvm-19 lld-19 libzstd-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "install-deps: apt-get install ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2
	apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# The venv: exactly the lock (requirements/dev.lock, hash-checked), rebuilt from scratch whenever the lock or
# pyproject.toml changes; the project itself goes in editable, without resolving anything (--no-deps).
# `make lock` refreshes the lock; `make test-latest` tries the newest releases in a throwaway venv.
stamp=.venv/.lock-$(cat requirements/dev.lock pyproject.toml | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
	echo "install-deps: .venv from requirements/dev.lock" >&2
	python3 -m venv --clear .venv
	.venv/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements/dev.lock >&2
	.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >&2
	touch "$stamp"
fi
