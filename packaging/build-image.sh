#!/usr/bin/env bash
# Build the node agent's image (packaging/Containerfile) with podman, from a base made here, and print its sizes.
#
#   packaging/build-image.sh [--json] [--tag NAME] [--base NAME] [--rebuild-base] [--ca FILE] [--no-smoke]
#
# No container registry is used. The base is a minimal Debian bookworm rootfs made with mmdebstrap (variant
# minbase, docs/man/locales excluded and the apt caches cleaned the way debian:bookworm-slim does), from
# the Debian archive named in this machine's apt sources (read at run time), imported with `podman import`
# and passed as --build-arg DEBIAN=<base>; the build runs with --pull=never. It is reused when it exists
# (--rebuild-base makes it again). The build stage installs clang & co. from Debian and the runtime lock
# from PyPI (hash-checked), as the Containerfile says.
#
# --ca FILE: a CA bundle for pip inside the build (a TLS-intercepting proxy; default: $PIP_CERT when it
# names a file). It is bind-mounted into the build's RUN steps only (podman build -v), never into a layer.
#
# Then: the build context's size (what COPY . /src receives after .containerignore; it fails if .git,
# .venv or build/ got in), the base and image sizes (`podman image inspect --format '{{.Size}}'`), the
# size of /opt/bpffs-sync in the image, and `podman run --rm <image> --version`.
# Needs: podman, mmdebstrap (apt-get install podman mmdebstrap), root. Not part of `make test`: `make image`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="localhost/bpffs-sync:latest"
BASE="localhost/bpffs-sync-base:bookworm-slim"
SUITE="bookworm"
JSON=0
REBUILD_BASE=0
SMOKE=1
CA="${PIP_CERT:-}"

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --json) JSON=1 ;;
        --tag) TAG="$2"; shift ;;
        --base) BASE="$2"; shift ;;
        --rebuild-base) REBUILD_BASE=1 ;;
        --ca) CA="$2"; shift ;;
        --no-smoke) SMOKE=0 ;;
        -h|--help) usage 0 ;;
        *) echo "build-image.sh: unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

for tool in podman mmdebstrap; do
    command -v "$tool" >/dev/null || { echo "build-image.sh: needs $tool (apt-get install $tool)" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/bpffs-sync-image.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
log() { echo "build-image.sh: $*" >&2; }

# The URI of the archive that serves suite $1: the URIs: line of the first deb822 entry of this machine's apt
# sources whose Suites: include it, else the first one-line `deb` entry that names it.
archive_uri() {
    local suite="$1" f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        uri="$(awk -v suite="$suite" '
            /^[[:space:]]*$/ { if (u != "" && s) { print u; exit } u = ""; s = 0; next }
            /^URIs:/ { u = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) s = 1 }
            END { if (u != "" && s) print u }' "$f" | head -n1)"
        [ -n "$uri" ] && { echo "$uri"; return 0; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        uri="$(awk -v suite="$suite" '$1 == "deb" {
            for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($(i + 1) == suite) print $i; exit } }' \
            "$f" | head -n1)"
        [ -n "$uri" ] && { echo "$uri"; return 0; }
    done
    return 1
}

make_base() {
    local uri sec
    uri="$(archive_uri "$SUITE")" || { echo "build-image.sh: no Debian $SUITE archive in /etc/apt sources" >&2; exit 1; }
    local sources=("deb $uri $SUITE main" "deb $uri $SUITE-updates main")
    if sec="$(archive_uri "$SUITE-security")"; then
        sources+=("deb $sec $SUITE-security main")
    fi
    log "making the base $BASE with mmdebstrap ($SUITE, minbase) from ${sources[*]}"
    # What debian:bookworm-slim has: no docs/man/locales (copyrights kept; dpkg keeps excluding them in the
    # image), apt's caches removed after each install, no translations (apt.conf.d/slim, put in at the end:
    # mmdebstrap needs its caches while it installs; its clean-up no longer finds the *.bin caches once
    # Dir::Cache::pkgcache is empty, hence the rm). Merged /usr without the usrmerge package (it pulls perl).
    cat > "$WORK/slim" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Apt::AutoRemove::SuggestsImportant "false";
APT
    # shellcheck disable=SC2016 # the hook's $1 is mmdebstrap's (the chroot)
    nice -n 19 mmdebstrap --variant=minbase --mode=root --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/groff/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --dpkgopt='path-exclude=/usr/share/linda/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook="copy-in $WORK/slim /etc/apt/apt.conf.d" \
        --customize-hook='rm -f "$1"/var/cache/apt/*.bin' \
        "$SUITE" "$WORK/base.tar" "${sources[@]}" >&2
    podman rmi --force "$BASE" >/dev/null 2>&1 || true
    podman import --change 'CMD ["bash"]' "$WORK/base.tar" "$BASE" >/dev/null
}

if [ "$REBUILD_BASE" = 1 ] || ! podman image exists "$BASE"; then
    make_base
else
    log "reusing the base $BASE (--rebuild-base makes it again)"
fi

# The build context after .containerignore: copied into a throwaway image, measured, checked.
# shellcheck disable=SC2016 # the $p of the RUN line is the container shell's
printf 'FROM %s\nCOPY . /ctx\nRUN du -sk /ctx | cut -f1 > /size && find /ctx -type f | wc -l > /files && for p in .git .venv build; do if [ -e "/ctx/$p" ]; then echo "context has $p" >&2; exit 1; fi; done\n' \
    "$BASE" > "$WORK/Containerfile.context"
podman build -q --pull=never --layers=false --ignorefile "$ROOT/.containerignore" \
    -f "$WORK/Containerfile.context" -t localhost/bpffs-sync-context:tmp "$ROOT" >/dev/null
CONTEXT_KB="$(podman run --rm --pull=never localhost/bpffs-sync-context:tmp cat /size)"
CONTEXT_FILES="$(podman run --rm --pull=never localhost/bpffs-sync-context:tmp cat /files)"
podman rmi --force localhost/bpffs-sync-context:tmp >/dev/null

BUILD_ARGS=(--pull=never --build-arg "DEBIAN=$BASE" -f "$ROOT/packaging/Containerfile" -t "$TAG")
if [ -n "$CA" ]; then
    [ -f "$CA" ] || { echo "build-image.sh: --ca $CA: no such file" >&2; exit 1; }
    printf '[global]\ncert = /run/bpffs-sync-build-ca.crt\n' > "$WORK/pip.conf"
    BUILD_ARGS+=(-v "$CA:/run/bpffs-sync-build-ca.crt:ro" -v "$WORK/pip.conf:/etc/pip.conf:ro")
fi
log "podman build ${TAG} (context ${CONTEXT_KB} KB, ${CONTEXT_FILES} files)"
nice -n 19 podman build "${BUILD_ARGS[@]}" "$ROOT" >&2

BASE_BYTES="$(podman image inspect --format '{{.Size}}' "$BASE")"
IMAGE_BYTES="$(podman image inspect --format '{{.Size}}' "$TAG")"
VENV_KB="$(podman run --rm --pull=never --entrypoint du "$TAG" -sk /opt/bpffs-sync | cut -f1)"
VERSION=""
if [ "$SMOKE" = 1 ]; then
    VERSION="$(podman run --rm --pull=never "$TAG" --version)"
fi

if [ "$JSON" = 1 ]; then
    printf '{"image": "%s", "image_bytes": %s, "base": "%s", "base_bytes": %s, "venv_kb": %s, ' \
        "$TAG" "$IMAGE_BYTES" "$BASE" "$BASE_BYTES" "$VENV_KB"
    printf '"context_kb": %s, "context_files": %s, "version": "%s"}\n' "$CONTEXT_KB" "$CONTEXT_FILES" "$VERSION"
else
    podman images --filter "reference=$TAG" --filter "reference=$BASE"
    echo "image $TAG: $IMAGE_BYTES bytes; base $BASE: $BASE_BYTES bytes; /opt/bpffs-sync: ${VENV_KB} KB"
    echo "build context: ${CONTEXT_KB} KB, ${CONTEXT_FILES} files; --version: ${VERSION:-not run}"
fi
