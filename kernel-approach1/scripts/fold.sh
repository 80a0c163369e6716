#!/usr/bin/env bash
# Fold the working-tree edits of FILES into the series commit TARGET of a dev tree, rewriting
# TARGET and the commits after it with plumbing only: no checkout, so no file's mtime changes
# and the next build recompiles just what the edit touched (a rebase would rewrite every file of
# the later patches, bpf-cgroup-defs.h included, and rebuild most of the kernel).
#
# Usage: fold.sh TREE TARGET FILE...     e.g. fold.sh build-plain HEAD~2 kernel/bpf/cgroup_stat.c
# The edit (`git diff HEAD -- FILES`) is applied with `git apply --cached` to TARGET and to every
# commit after it, so a FILE may also change in later commits as long as the edit's hunks apply
# to TARGET's version (the fold stops, changing nothing, when one does not).
# FOLD_MSG=FILE replaces TARGET's commit message with the content of FILE.
# FOLD_DIFF=FILE folds that diff (a part of the working-tree edit, e.g. one finding's hunks)
# instead of the whole `git diff HEAD -- FILES`.
set -euo pipefail

main() {
	[[ $# -ge 3 ]] || { echo "usage: fold.sh TREE TARGET FILE..." >&2; exit 2; }
	local tree=$1 target files commit parent msg_file=${FOLD_MSG:-} diff_file=${FOLD_DIFF:-}
	[[ -z $msg_file ]] || msg_file=$(realpath "$msg_file")
	[[ -z $diff_file ]] || diff_file=$(realpath "$diff_file")
	target=$(git -C "$tree" rev-parse --verify "$2^{commit}")
	shift 2
	files=("$@")
	cd "$tree"
	git merge-base --is-ancestor "$target" HEAD || { echo "fold: $target is not in HEAD's history" >&2; exit 2; }

	idx=$(mktemp)  # globals: the EXIT trap runs after main returns
	diff=$(mktemp)
	trap 'rm -f "$idx" "$diff"' EXIT
	if [[ -n $diff_file ]]; then
		cp "$diff_file" "$diff"
	else
		git diff --binary HEAD -- "${files[@]}" >"$diff"
	fi
	[[ -s $diff || -n $msg_file ]] || { echo "fold: no change in ${files[*]}" >&2; exit 2; }
	parent=$(git rev-parse "$target^")
	for commit in $(git rev-list --reverse "$target^..HEAD"); do
		GIT_INDEX_FILE=$idx git read-tree "$commit"
		if [[ -s $diff ]] && ! GIT_INDEX_FILE=$idx git apply --cached "$diff"; then
			echo "fold: the edit does not apply to $(git log -1 --format='%h %s' "$commit"); nothing changed" >&2
			exit 2
		fi
		parent=$(git log -1 --format='%an%x00%ae%x00%ad%x00%B' "$commit" |
			{
				IFS= read -r -d '' an; IFS= read -r -d '' ae; IFS= read -r -d '' ad
				msg=$(cat)
				[[ -n $msg_file && $commit == "$target" ]] && msg=$(cat "$msg_file")
				GIT_AUTHOR_NAME=$an GIT_AUTHOR_EMAIL=$ae GIT_AUTHOR_DATE=$ad \
					GIT_COMMITTER_NAME=$an GIT_COMMITTER_EMAIL=$ae \
					git commit-tree "$(GIT_INDEX_FILE=$idx git write-tree)" -p "$parent" -m "$msg"
			})
	done
	git reset -q --soft "$parent"
	git reset -q -- "${files[@]}"  # index = new HEAD; the files on disk are untouched
	git log --oneline "$target^..HEAD"
}

main "$@"
exit
