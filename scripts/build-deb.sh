#!/usr/bin/env bash
# `npm run deb [-- PEERDIST_TGZ]`: builds .build/deb/peerdist_VERSION_ARCH.deb with dpkg-deb from the npm
# package (built here with `npm pack`, or the tarball given) and its production dependencies
# (`npm ci --omit=dev` against package-lock.json). Layout and maintainer scripts: packaging/README.md.
# Prints the path of the .deb on its last line. Needs node, npm, dpkg-deb; no root (--root-owner-group).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
version=$(node -p 'require("./package.json").version')
# The package carries a native addon (classic-level, under level: LevelDB for the cache index), so it
# is built for one architecture; only that architecture's prebuilt addon is kept.
arch=$(dpkg --print-architecture)
case "$arch" in
  amd64) prebuild=linux-x64 ;;
  arm64) prebuild=linux-arm64 ;;
  armhf) prebuild=linux-arm ;;
  *) echo "build-deb: no prebuilt native addon for $arch" >&2; exit 1 ;;
esac
for t in dpkg-deb objdump gzip; do
  command -v "$t" >/dev/null || { echo "build-deb: $t is needed (objdump: binutils)" >&2; exit 1; }
done
out=${PEERDIST_DEB_OUT:-$repo/.build/deb}
work=$out/work
tarball=${1:+$(realpath "$1")}
rm -rf "$work"
mkdir -p "$work"
if [ -z "$tarball" ]; then
  npm pack --silent --pack-destination "$out" >/dev/null
  tarball=$out/peerdist-$version.tgz
fi
maintainer=${PEERDIST_DEB_MAINTAINER:-"peerdist maintainers <maintainers@peerdist.invalid>"}
# Reproducible: file dates and the changelog date are those of the last commit.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

pkg=$work/root
app=$pkg/usr/lib/peerdist
mkdir -p "$pkg/usr/lib"
tar -xzf "$tarball" -C "$work"
mv "$work/package" "$app"

# Production dependencies, exactly as locked, no install scripts: classic-level loads its prebuilt
# addon at run time (node-gyp-build); nothing is compiled.
cp package-lock.json "$app/"
(cd "$app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
rm -rf "$app/package-lock.json" "$app/node_modules/.package-lock.json" "$app/node_modules/.bin"
for d in "$app"/node_modules/*/prebuilds "$app"/node_modules/@*/*/prebuilds; do
  [ -d "$d" ] || continue
  find "$d" -mindepth 1 -maxdepth 1 ! -name "$prebuild" -exec rm -rf {} +
  find "$d" -name '*.musl.node' -delete
done
# classic-level's C++ sources and build files: the prebuilt addon is used, nothing is compiled here.
rm -rf "$app/node_modules/classic-level/deps" "$app/node_modules/classic-level/binding.gyp" \
  "$app/node_modules/classic-level/binding.cc"
# The dependencies' documentation (their license files stay), npm's ignore files, CI files.
rm -rf "$app/node_modules/undici/docs"
find "$app/node_modules" -type f \( -iname '*.md' -o -name '.npmignore' -o -name '.travis.yml' -o -name '.eslintrc*' \) -delete
# Our documentation goes to /usr/share/doc/peerdist; nothing reads it at run time.
install -d -m 0755 "$pkg/usr/share/doc/peerdist"
mv "$app/protocol" "$pkg/usr/share/doc/peerdist/protocol"
mv "$app/README.md" "$app/CHANGELOG.md" "$pkg/usr/share/doc/peerdist/"
rm -f "$app/LICENSE"
# packaging/ of the npm package: here the units are in /usr/lib/systemd/system, the maintainer
# scripts in the control area, the Grafana dashboard among the examples.
install -d -m 0755 "$pkg/usr/share/doc/peerdist/examples"
mv "$app/packaging/peerdist-grafana.json" "$pkg/usr/share/doc/peerdist/examples/"
rm -rf "$app/packaging"
# Modes: directories 755, files 644, scripts (a #! line) 755.
find "$pkg" -type d -exec chmod 0755 {} +
find "$pkg" -type f -exec chmod 0644 {} +
find "$app" -type f -name '*.js' -exec grep -l -m1 '^#!' {} + | while read -r f; do
  [ "$(head -c 2 "$f")" = '#!' ] && chmod 0755 "$f"
done

mkdir -p "$pkg/usr/bin"
cat >"$pkg/usr/bin/peerdist" <<'SH'
#!/bin/sh
# peerdist, as installed by the Debian package: the Node.js the package depends on runs the compiled CLI.
exec /usr/bin/node /usr/lib/peerdist/bin/peerdist.js "$@"
SH
chmod 0755 "$pkg/usr/bin/peerdist"

install -d -m 0755 "$pkg/usr/lib/systemd/system" "$pkg/etc/peerdist" "$pkg/var/lib/peerdist" \
  "$pkg/usr/share/doc/peerdist/examples" "$pkg/usr/share/man/man1"
install -m 0644 packaging/peerdist.service packaging/peerdist-hosted-cache.service \
  packaging/peerdist-origin@.service "$pkg/usr/lib/systemd/system/"
install -m 0644 packaging/deb/config.json "$pkg/etc/peerdist/config.json"
install -m 0644 packaging/deb/origin-site.env "$pkg/usr/share/doc/peerdist/examples/origin-site.env"
gzip -9n <packaging/deb/peerdist.1 >"$pkg/usr/share/man/man1/peerdist.1.gz"
{
  echo "peerdist ($version) unstable; urgency=medium"
  echo
  echo "  * peerdist $version: see /usr/share/doc/peerdist/CHANGELOG.md."
  echo
  echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$pkg/usr/share/doc/peerdist/changelog.gz"
node packaging/deb/copyright.mjs "$app" >"$pkg/usr/share/doc/peerdist/copyright"

# Control area.
ctl=$pkg/DEBIAN
install -d -m 0755 "$ctl"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm packaging/deb/config "$ctl/"
install -m 0644 packaging/deb/templates "$ctl/"
echo /etc/peerdist/config.json >"$ctl/conffiles"
# The native addon's libraries: the highest glibc symbol version it uses.
glibc=$(find "$app/node_modules" -name '*.node' -exec objdump -T {} + 2>/dev/null |
  grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 || true)
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$ctl/control" <<CONTROL
Package: peerdist
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: nodejs (>= 20), adduser, debconf (>= 0.5) | debconf-2.0, libc6 (>= ${glibc:-2.17}), libgcc-s1, libstdc++6
Section: net
Priority: optional
Description: peer-to-peer LAN cache, compatible with BranchCache (PeerDist)
 peerdist lets the machines of a branch office share what they download: the
 first machine fetches a file from the origin, the others get its blocks from
 their peers on the subnet, each block checked against its hash. It speaks the
 PeerDist protocols of Microsoft BranchCache: content information (MS-PCCRC),
 HTTP negotiation (MS-PCCRTP), discovery (MS-PCCRD), block retrieval
 (MS-PCCRR) and the hosted cache (MS-PCHC).
 .
 This package runs the peer cache daemon as a systemd service and ships units
 for a hosted cache and for origins (one instance per site).
CONTROL
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$ctl/md5sums"
chmod 0644 "$ctl/md5sums" "$ctl/conffiles" "$ctl/control"
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/peerdist_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
