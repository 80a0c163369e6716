#!/usr/bin/env bash
# `make test-latest`: lint, types and the host suite in a throwaway venv (build/venv-latest) holding the NEWEST
# release of every dependency, not the lock. It says which releases differ from the lock, so a new release that
# breaks us fails a named test here before it reaches a node. Run it before each stop; the lock stays as it is.
# --lowest (`make test-lowest`): the same, with every runtime dependency at the lower bound pyproject.toml
# and the lab extra declare (their `>=` bounds turned into `==` constraints), so the bounds are known to be true.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/venv-latest
constraints=()
if [[ ${1:-} == --lowest ]]; then
	venv=build/venv-lowest
	python3 - >build/lowest.txt <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["lab"]:
    name, low = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][^,;]*)", req).groups()
    print(f"{name}=={low}")
PY
	constraints=(-c build/lowest.txt)
	echo "test-lowest: $(tr '\n' ' ' <build/lowest.txt)"
fi
python3 -m venv --clear "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip setuptools >&2
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade --upgrade-strategy eager "${constraints[@]}" \
	-e '.[dev,lab]' >&2
"$venv/bin/python" - <<'PY'
import re, subprocess, sys
lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ \\]+)", open("requirements/dev.lock").read(), re.M))
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
lock = {norm(k): v for k, v in lock.items()}
out = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
newer = [f"{n} {lock[norm(n)]} -> {v}" for n, v in (l.split("==") for l in out.splitlines() if "==" in l)
         if norm(n) in lock and lock[norm(n)] != v]
print("test-latest: not the lock:", ", ".join(newer) if newer else "none")
PY
BPFFS_SYNC_LATEST=1 make --no-print-directory lint-run pytest-run VENV="$venv/bin"
