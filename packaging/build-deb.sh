#!/usr/bin/env bash
# build-deb.sh: build dist/edgeswitch_<version>_<arch>.deb with nfpm (run by
# `make deb` from the repository root). The binary is built here, static and
# stripped, and everything generated from it (man page, completions,
# examples) comes from that same binary. DIST (default dist) is where the
# .deb goes, with the staging files in $DIST/stage.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
NFPM=${NFPM:-"$GO run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2"}

# Version: the tag when HEAD is tagged (v1.2.3 -> 1.2.3), a tag plus commits
# sorts after the tag (1.2.3+git4.gabcdef0), no tag at all gives
# 0.0.0~git<commit date>.<short hash>. Debian revision 1 (non-native).
# DEB_VERSION and DEB_ARCH override both.
commit=$(git rev-parse --short=7 HEAD)
date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d HEAD)
if desc=$(git describe --tags --long 2>/dev/null); then
	tag=${desc%-*-g*}
	n=${desc#"$tag"-}
	n=${n%%-*}
	upstream=${tag#v}
	upstream=${upstream//-/\~} # v1.2.3-rc1 -> 1.2.3~rc1, before 1.2.3
	[ "$n" = 0 ] || upstream="$upstream+git$n.g$commit"
else
	upstream="0.0.0~git$date.$commit"
fi
export DEB_VERSION=${DEB_VERSION:-$upstream-1}
[[ $DEB_VERSION =~ ^[0-9][A-Za-z0-9.+~-]*-[A-Za-z0-9.+~]+$ ]] || {
	echo "build-deb.sh: $DEB_VERSION is not a Debian version <upstream>-<revision>; set DEB_VERSION" >&2
	exit 1
}
export DEB_ARCH=${DEB_ARCH:-$($GO env GOARCH)}
DIST=${DIST:-dist}
mkdir -p "$DIST" && DIST=$(cd "$DIST" && pwd)
export DEB_STAGE=$DIST/stage
# Reproducible: file times and the changelog date from the commit.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}

rm -rf "$DEB_STAGE" && mkdir -p "$DEB_STAGE/examples"
rm -f "$DIST"/edgeswitch_*.deb

CGO_ENABLED=0 GOOS=linux GOARCH=$DEB_ARCH $GO build -trimpath \
	-ldflags "-s -w -X main.version=$DEB_VERSION" \
	-o "$DEB_STAGE/edgeswitch" ./cmd/edgeswitch

# Generated files come from a binary that runs here; when cross-building
# use the host's own build of the same source.
es=$DEB_STAGE/edgeswitch
if [ "$DEB_ARCH" != "$($GO env GOHOSTARCH)" ]; then
	es=$DEB_STAGE/edgeswitch-host
	CGO_ENABLED=0 $GO build -o "$es" ./cmd/edgeswitch
fi
"$es" -c /dev/null man | gzip -9n > "$DEB_STAGE/edgeswitch.1.gz"
for sh in bash zsh fish; do
	"$es" -c /dev/null completion "$sh" > "$DEB_STAGE/completion.$sh"
done
"$es" -c /dev/null init --dir "$DEB_STAGE/examples" > /dev/null
rm -f "$DEB_STAGE/edgeswitch-host"

cp packaging/copyright packaging/lintian-overrides "$DEB_STAGE/"
sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@COMMIT@/$commit/" \
	-e "s/@DATE@/$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")/" \
	packaging/changelog | gzip -9n > "$DEB_STAGE/changelog.Debian.gz"

$NFPM pkg --packager deb --config packaging/nfpm.yaml --target "$DIST/"
ls "$DIST/edgeswitch_${DEB_VERSION}_${DEB_ARCH}.deb"
