#!/usr/bin/env bash
# Each patch of the series must build on its own (bisectability): check out baseline+1, +2, ...
# in a worktree of the plain tree and compile the objects that patch touches, with -Werror.
#
# Usage: bisect-build.sh            (after build.sh plain; the worktree lives in the cache)
# Per patch: every touched .c under kernel/ fs/ mm/ net/ becomes its .o target; a touched header
# also rebuilds kernel/bpf/ and kernel/cgroup/ (its users here); tools/lib/bpf is built when the
# patch touches it. Prints one line per patch and exits non-zero on the first that fails.
set -euo pipefail

main() {
	local here repo cache tree wt commits commit n=0 files objs dirs
	here=$(cd "$(dirname "$0")/.." && pwd)
	repo=$(cd "$here/.." && pwd)
	cache=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
	tree=$cache/build-plain
	wt=$cache/bisect
	export CCACHE_DIR=$cache/ccache
	[[ -f $tree/.config ]] || { echo "bisect-build: no $tree/.config (run scripts/build.sh plain)" >&2; exit 2; }

	exec 9>"$cache/bisect.lock"
	flock 9
	if [[ ! -d $wt ]]; then
		git -C "$tree" worktree prune
		git -C "$tree" worktree add -q --detach "$wt" baseline
	fi
	cp "$tree/.config" "$wt/.config"
	git -C "$wt" checkout -q --detach baseline
	make -s -C "$wt" olddefconfig >/dev/null
	make -s -C "$wt" -j"$(nproc)" CC="ccache gcc" prepare >/dev/null

	mapfile -t commits < <(git -C "$tree" rev-list --reverse baseline..HEAD)
	for commit in "${commits[@]}"; do
		n=$((n + 1))
		git -C "$wt" checkout -q --detach "$commit"
		mapfile -t files < <(git -C "$wt" diff-tree --no-commit-id --name-only -r "$commit")
		objs=() dirs=()
		for f in "${files[@]}"; do
			case $f in
			kernel/*.c | fs/*.c | mm/*.c | net/*.c) objs+=("${f%.c}.o") ;;
			include/*.h | kernel/*.h) dirs+=(kernel/bpf/ kernel/cgroup/) ;;
			esac
		done
		if ((${#objs[@]} + ${#dirs[@]})); then
			make -s -C "$wt" -j"$(nproc)" CC="ccache gcc" KCFLAGS=-Werror \
				$(printf '%s\n' "${objs[@]}" "${dirs[@]}" | sort -u) >&2
		fi
		if printf '%s\n' "${files[@]}" | grep -q '^tools/lib/bpf/'; then
			make -s -C "$wt/tools/lib/bpf" -j"$(nproc)" EXTRA_CFLAGS=-Werror >&2
		fi
		echo "bisect-build: patch $n/${#commits[@]} builds: $(git -C "$wt" log -1 --format=%s)"
	done
	echo "bisect-build: $repo series: every patch builds on its own"
}

main "$@"
exit
