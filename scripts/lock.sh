#!/usr/bin/env bash
# Refresh the one lock (`make lock`): a single resolution of pyproject.toml's dependencies, every extra included,
# with the hash of every file, into requirements/dev.lock; requirements/runtime.lock is the runtime subset of that
# same resolution (constrained to it, so every pin and hash agree: tests/test_lock.py checks it), as is
# requirements/lab.lock, the agent plus the `lab` extra (report, benches). Hashes come from
# the public index alone (no local find-links or extra indexes), so the lock installs anywhere.
# Every install path uses it: scripts/install-deps.sh (make demo / make test), packaging/Containerfile, and the
# documented wheel install (README: pip install --require-hashes -r requirements/runtime.lock, then the wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
compile=(.venv/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
	--no-emit-find-links --no-header)
[[ -x ${compile[0]} ]] || { echo "lock: .venv/bin/pip-compile missing (run scripts/install-deps.sh)" >&2; exit 2; }
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL
upgrade=(--upgrade)
[[ ${1:-} == --keep ]] && upgrade=()  # only re-resolve what pyproject.toml changed
"${compile[@]}" "${upgrade[@]}" --all-extras -o requirements/dev.lock pyproject.toml
"${compile[@]}" -c requirements/dev.lock -o requirements/runtime.lock pyproject.toml
"${compile[@]}" -c requirements/dev.lock --extra lab -o requirements/lab.lock pyproject.toml
for f in dev runtime lab; do echo "lock: requirements/$f.lock ($(grep -c '^[a-z]' requirements/$f.lock) packages)"; done
