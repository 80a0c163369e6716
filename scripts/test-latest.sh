#!/usr/bin/env bash
# `make test-latest`: lint, types and the host suite in a throwaway venv (build/venv-latest) holding the NEWEST
# release of every dependency, not the lock. It says which releases differ from the lock, so a new release that
# breaks us fails a named test here before it reaches a node. Run it before each stop; the lock stays as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/venv-latest
python3 -m venv --clear "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip setuptools >&2
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade --upgrade-strategy eager -e '.[dev]' >&2
"$venv/bin/python" - <<'PY'
import re, subprocess, sys
lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ \\]+)", open("requirements/dev.lock").read(), re.M))
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
lock = {norm(k): v for k, v in lock.items()}
out = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
newer = [f"{n} {lock[norm(n)]} -> {v}" for n, v in (l.split("==") for l in out.splitlines() if "==" in l)
         if norm(n) in lock and lock[norm(n)] != v]
print("test-latest: newer than the lock:", ", ".join(newer) if newer else "none")
PY
BPFFS_SYNC_LATEST=1 make --no-print-directory lint-run pytest-run VENV="$venv/bin"
