#!/usr/bin/env bash
# Build Linux 7.3 for virtme-ng, with the series in ../patches applied (none yet: a baseline build).
# Usage: build.sh [plain|debug]   Output tree: $BPFFS_SYNC_KCACHE/build-<variant>; ccache keeps rebuilds cheap.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
variant=${1:-plain}
CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
VNG=${VNG:-$(command -v vng || echo "$here/../.venv/bin/vng")}
src=$("$here/scripts/fetch-source.sh")
tree=$CACHE/build-$variant

export CCACHE_DIR=$CACHE/ccache
# A work tree per variant: pristine source plus the series, rebuilt only when the series changes.
series_sum=$(shopt -s nullglob; cat /dev/null "$here"/patches/*.patch | sha256sum | cut -c1-16)
if [[ ! -f $tree/.series-$series_sum ]]; then
	rm -rf "$tree"
	mkdir -p "$tree"
	cp -a "$src/." "$tree/"
	(cd "$tree" && git init -q && git add -A -f && git -c user.name=bpffs-sync -c user.email=bpffs-sync@localhost commit -qm "linux-source-7.3 baseline")
	for p in "$here"/patches/*.patch; do
		[[ -e $p ]] || continue
		(cd "$tree" && git -c user.name=bpffs-sync -c user.email=bpffs-sync@localhost am -q "$p")
	done
	touch "$tree/.series-$series_sum"
fi

cd "$tree"
frags=(--config "$here/config/cgstat.config")
[[ $variant == debug ]] && frags+=(--config "$here/config/debug.config")
if [[ ! -f .config || ! -f .config-$series_sum ]]; then
	"$VNG" --kconfig "${frags[@]}" >&2
	touch ".config-$series_sum"
fi
make -s -j"$(nproc)" CC="ccache gcc" bzImage >&2
echo "$tree/arch/x86/boot/bzImage"
