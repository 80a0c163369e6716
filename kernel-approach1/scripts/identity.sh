# Sourced by build.sh and export-series.sh: the identity that commits (git am) and signs the
# series is the project's own git identity (`git config user.name` / `user.email` of this
# checkout), never a placeholder. Sets GIT_IDENT=(-c user.name=... -c user.email=...).
ident_name=$(git -C "$here" config user.name || true)
ident_email=$(git -C "$here" config user.email || true)
if [[ -z $ident_name || -z $ident_email ]]; then
	echo "kernel-approach1: error: git user.name/user.email of $here are not set" >&2
	exit 2
fi
GIT_IDENT=(-c "user.name=$ident_name" -c "user.email=$ident_email")
