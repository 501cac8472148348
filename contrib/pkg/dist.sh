#!/bin/bash
# dist.sh OUTDIR: the release tarball OUTDIR/podman-hpc-VERSION.tar.gz that
# both packages build from (rpmbuild -ta; dpkg-buildpackage in its unpacked
# tree): the tree's files as they are (tracked, and untracked ones git does
# not ignore: a test of the packages tests the tree, committed or not; a
# release is made from a clean tree), Go's modules in vendor/ (go mod
# vendor: the builds download nothing), and the version (contrib/pkg/
# version.sh) stamped into VERSION, the spec's Version and, for a snapshot,
# a debian/changelog entry. Prints the tarball's path.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
repo=$(readlink -f "$(dirname "$0")/../..")
mkdir -p "$1"
out=$(readlink -f "$1")
cd "$repo"
for tool in git go tar gzip; do
	command -v "$tool" >/dev/null || { echo "dist.sh: $tool not found; run 'make deps'" >&2; exit 1; }
done
version=$(contrib/pkg/version.sh)
name=podman-hpc-$version
stage=$(mktemp -d "$out/.dist.XXXXXX")
trap 'rm -rf "$stage"' EXIT

git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
	# A tracked file deleted in the tree is not in it.
	if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
done | tar -c --null --no-recursion -T - | tar -x -C "$stage" --one-top-level="$name"
go mod vendor -o "$stage/$name/vendor"

cd "$stage/$name"
echo "$version" >VERSION
sed -i "s/^Version:.*/Version:        $version/" podman-hpc.spec
# (sed, not dpkg-parsechangelog: an RPM host makes tarballs too)
if [ "$(sed -n '1s/^podman-hpc (\([^)]*\)).*/\1/p' debian/changelog)" != "$version-1" ]; then
	maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' debian/changelog | head -1)
	entry=$(printf 'podman-hpc (%s-1) UNRELEASED; urgency=medium\n\n  * Snapshot %s of the tree.\n\n -- %s  %s\n' \
		"$version" "$version" "$maintainer" "$(date -R -d "@$(git -C "$repo" log -1 --format=%ct)")")
	printf '%s\n\n%s\n' "$entry" "$(cat debian/changelog)" >debian/changelog
fi
cd "$stage"
# Reproducible: sorted, owned by root, dated by the last commit.
tar -c --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$(git -C "$repo" log -1 --format=%ct)" "$name" |
	gzip -n >"$out/$name.tar.gz.tmp"
mv "$out/$name.tar.gz.tmp" "$out/$name.tar.gz"
echo "$out/$name.tar.gz"
