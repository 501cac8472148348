#!/bin/sh
# version.sh: the version of this tree, for the binaries and both packages.
# VERSION holds the release, X.Y.Z. A git checkout past the commit that last
# changed VERSION is a snapshot after that release: X.Y.Z+N.gHASH, N the
# commits since (0 at the release itself, which is plain X.Y.Z), and .dirty
# with uncommitted changes. dpkg and rpm both sort these after X.Y.Z and in
# commit order, and before the next release. A tree without its own .git (a
# tarball from make dist, whose VERSION holds the full version already)
# prints VERSION as it is. (A clone of depth 1 sees its one commit as the
# one that changed VERSION: X.Y.Z, or X.Y.Z.dirty.)
set -eu
root=$(dirname "$0")/../..
cd "$root"
version=$(cat VERSION)
if [ -e .git ] && command -v git >/dev/null; then
	since=$(git rev-list --count "$(git log -1 --format=%H -- VERSION)..HEAD" 2>/dev/null || echo 0)
	[ "$since" = 0 ] || version=$version+$since.g$(git rev-parse --short=8 HEAD)
	git update-index -q --refresh >/dev/null 2>&1 || true
	git diff-index --quiet HEAD -- 2>/dev/null || version=$version.dirty
fi
echo "$version"
