#!/usr/bin/env bash
# Fetch and unpack Debian's linux-source-7.3 (suite trixie-backports) into a cache outside the repo.
# The archive URI is derived at run time from the host's own apt sources; nothing is hard-coded.
# Idempotent: a second run with the tree present does nothing.
set -euo pipefail

CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
PKG=linux-source-7.3
SUITE=trixie-backports
SRC_DIR=$CACHE/src

if [[ -f $SRC_DIR/Makefile && -f $SRC_DIR/.bpffs-sync-unpacked ]]; then
	echo "$SRC_DIR"
	exit 0
fi

mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/parts" "$CACHE/deb"
sources=/etc/apt/sources.list.d/debian.sources
uri=$(awk '/^URIs:/ { print $2; exit }' "$sources" 2>/dev/null || true)
if [[ -z $uri ]]; then
	uri=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
fi
[[ -n $uri ]] || { echo "fetch-source: no Debian archive URI in the host's apt sources" >&2; exit 2; }

cat >"$CACHE/apt/parts/$SUITE.sources" <<SRC
Types: deb
URIs: $uri
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC

APT_OPTS=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$CACHE/apt/parts"
	-o "Dir::State::Lists=$CACHE/apt/lists" -o "APT::Get::List-Cleanup=0")
apt-get "${APT_OPTS[@]}" -q update >&2
deb=$(ls "$CACHE"/deb/${PKG}_*.deb 2>/dev/null | head -n1 || true)
if [[ -z $deb ]]; then
	(cd "$CACHE/deb" && apt-get "${APT_OPTS[@]}" -q download "$PKG" >&2)
	deb=$(ls "$CACHE"/deb/${PKG}_*.deb | head -n1)
fi

tmp=$(mktemp -d "$CACHE/unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
tarball=$(ls "$tmp"/usr/src/linux-source-*.tar.* | head -n1)
rm -rf "$SRC_DIR"
mkdir -p "$SRC_DIR"
tar -xf "$tarball" -C "$SRC_DIR" --strip-components=1
touch "$SRC_DIR/.bpffs-sync-unpacked"
echo "$SRC_DIR"
