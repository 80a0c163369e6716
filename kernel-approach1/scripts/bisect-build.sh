#!/usr/bin/env bash
# Each patch of the series must build on its own (bisectability): check out baseline+1, +2, ...
# in a worktree of the plain tree and compile the objects that patch touches, with -Werror,
# link vmlinux, and compile kernel/bpf/ and kernel/cgroup/ with CONFIG_CGROUP_BPF=n and with
# CONFIG_BPF_EVENTS=n (the two options the series' stubs and #ifdefs depend on).
#
# Usage: bisect-build.sh            (after build.sh plain; the worktrees live in the cache)
# Another series: BISECT_TREE=<git tree whose baseline..HEAD is the series> (default build-plain),
# BISECT_CONFIG=<.config to build with> (default the tree's), BISECT_NAME=<worktree prefix> (default
# bisect); e.g. Approach 2 from its developer tree:
#   BISECT_TREE=$cache/a2-dev BISECT_CONFIG=$cache/build-a2/.config BISECT_NAME=bisect-a2 bisect-build.sh
# Per patch: every touched .c under kernel/ fs/ mm/ net/ becomes its .o target, built with -Werror
# and then W=1 -Werror; a touched header also rebuilds kernel/bpf/ and kernel/cgroup/ (its users
# here); tools/lib/bpf is built when the patch touches it. Prints one line per patch and exits non-zero on the first that fails.
#
# Link: BISECT_LINK=each (default) runs `make vmlinux` after every patch that changes the kernel
# (a patch touching only tools/ or Documentation/ leaves vmlinux as the one before it linked);
# BISECT_LINK=last links HEAD only, BISECT_LINK=none never. The link itself (vmlinux.a to
# vmlinux: vmlinux.o, BTF, three kallsyms passes) took 78 s on the 2-vCPU builder beside a
# build; what costs is the recompile of everything a patch's headers reach: the first run
# builds the whole kernel in $cache/bisect, later runs are incremental and ccache-warm.
#
# =n configs: BISECT_NOCONFIGS="cgroup-bpf bpf-events" (default; "" skips them). Each is an
# O= build under $cache/bisect-no-<name>, seeded from the plain .config by scripts/config and
# olddefconfig (BPF_EVENTS has no prompt: its KPROBE_EVENTS and UPROBE_EVENTS go too), from a
# second worktree, $cache/bisect-src, which is never built in (O= needs a clean source tree).
set -euo pipefail

# name -> scripts/config arguments, and the option that must end up unset
declare -A NOCFG_ARGS=(
	[cgroup-bpf]="-d CGROUP_BPF"
	[bpf-events]="-d BPF_EVENTS -d KPROBE_EVENTS -d UPROBE_EVENTS"
)
declare -A NOCFG_OPT=([cgroup-bpf]=CGROUP_BPF [bpf-events]=BPF_EVENTS)

# worktree DIR at COMMIT, made if missing
worktree() {
	local tree=$1 dir=$2 commit=$3
	if [[ ! -d $dir ]]; then
		git -C "$tree" worktree prune
		git -C "$tree" worktree add -q --detach "$dir" "$commit"
	fi
	git -C "$dir" checkout -q --detach "$commit"
}

# O= build dir for a =n config, seeded from the plain .config; prints nothing
seed_noconfig() {
	local config=$1 src=$2 name=$3 out=$4
	local opt=${NOCFG_OPT[$name]}
	mkdir -p "$out"
	cp "$config" "$out/.config"
	# shellcheck disable=SC2086 # word splitting of the argument list is intended
	"$src/scripts/config" --file "$out/.config" ${NOCFG_ARGS[$name]}
	make -s -C "$src" O="$out" olddefconfig >/dev/null
	if grep -q "^CONFIG_$opt=" "$out/.config"; then
		echo "bisect-build: CONFIG_$opt is still set in $out/.config after olddefconfig" >&2
		exit 2
	fi
	make -s -C "$src" O="$out" -j"$(nproc)" CC="ccache gcc" prepare >/dev/null
}

main() {
	local here repo cache tree config wt src commits commit n=0 files objs dirs kernel name nc
	local link=${BISECT_LINK:-each} noconfigs
	read -r -a noconfigs <<<"${BISECT_NOCONFIGS-cgroup-bpf bpf-events}"
	here=$(cd "$(dirname "$0")/.." && pwd)
	repo=$(cd "$here/.." && pwd)
	cache=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
	tree=${BISECT_TREE:-$cache/build-plain}
	config=${BISECT_CONFIG:-$tree/.config}
	name=${BISECT_NAME:-bisect}
	wt=$cache/$name
	src=$cache/$name-src
	export CCACHE_DIR=$cache/ccache
	[[ -f $config ]] || { echo "bisect-build: no $config (run scripts/build.sh plain)" >&2; exit 2; }
	case $link in
	each | last | none) ;;
	*) echo "bisect-build: BISECT_LINK must be each, last or none, not '$link'" >&2; exit 2 ;;
	esac
	for nc in "${noconfigs[@]}"; do
		[[ -n ${NOCFG_OPT[$nc]:-} ]] || { echo "bisect-build: unknown =n config '$nc' (cgroup-bpf, bpf-events)" >&2; exit 2; }
	done

	exec 9>"$cache/$name.lock"
	flock 9
	worktree "$tree" "$wt" baseline
	cp "$config" "$wt/.config"
	make -s -C "$wt" olddefconfig >/dev/null
	make -s -C "$wt" -j"$(nproc)" CC="ccache gcc" prepare >/dev/null
	if ((${#noconfigs[@]})); then
		worktree "$tree" "$src" baseline
		for nc in "${noconfigs[@]}"; do
			seed_noconfig "$config" "$src" "$nc" "$cache/$name-no-$nc"
		done
	fi

	mapfile -t commits < <(git -C "$tree" rev-list --reverse baseline..HEAD)
	for commit in "${commits[@]}"; do
		n=$((n + 1))
		git -C "$wt" checkout -q --detach "$commit"
		mapfile -t files < <(git -C "$wt" diff-tree --no-commit-id --name-only -r "$commit")
		objs=() dirs=() kernel=0
		for f in "${files[@]}"; do
			case $f in
			kernel/*.c | fs/*.c | mm/*.c | net/*.c) objs+=("${f%.c}.o") ;;
			include/*.h | kernel/*.h) dirs+=(kernel/bpf/ kernel/cgroup/) ;;
			esac
			case $f in
			tools/* | Documentation/* | MAINTAINERS) ;;
			*) kernel=1 ;;
			esac
		done
		if ((${#objs[@]} + ${#dirs[@]})); then
			make -s -C "$wt" -j"$(nproc)" CC="ccache gcc" KCFLAGS=-Werror \
				$(printf '%s\n' "${objs[@]}" "${dirs[@]}" | sort -u) >&2
		fi
		# the files the patch touches also W=1 -Werror (its own code, not all of upstream's)
		if ((${#objs[@]})); then
			make -s -C "$wt" -j"$(nproc)" CC="ccache gcc" W=1 KCFLAGS=-Werror "${objs[@]}" >&2
		fi
		if printf '%s\n' "${files[@]}" | grep -q '^tools/lib/bpf/'; then
			make -s -C "$wt/tools/lib/bpf" -j"$(nproc)" EXTRA_CFLAGS=-Werror >&2
		fi
		if [[ $link == each ]] && ((kernel)); then
			make -s -C "$wt" -j"$(nproc)" CC="ccache gcc" vmlinux >&2
			echo "bisect-build: patch $n/${#commits[@]} links vmlinux"
		fi
		if ((kernel)) && ((${#noconfigs[@]})); then
			git -C "$src" checkout -q --detach "$commit"
			for nc in "${noconfigs[@]}"; do
				make -s -C "$src" O="$cache/$name-no-$nc" -j"$(nproc)" CC="ccache gcc" \
					KCFLAGS=-Werror kernel/bpf/ kernel/cgroup/ >&2
			done
			echo "bisect-build: patch $n/${#commits[@]} compiles with ${noconfigs[*]} =n"
		fi
		echo "bisect-build: patch $n/${#commits[@]} builds: $(git -C "$wt" log -1 --format=%s)"
	done
	if [[ $link == last ]]; then
		make -s -C "$wt" -j"$(nproc)" CC="ccache gcc" vmlinux >&2
		echo "bisect-build: HEAD links vmlinux"
	fi
	echo "bisect-build: $repo series: every patch builds on its own (link: $link; =n: ${noconfigs[*]:-none})"
}

main "$@"
exit
