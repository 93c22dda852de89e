#!/usr/bin/env bash
# Packaging check (issue 23), run by .ci/run before the tests; needs root and the tools .ci/run installs
# (dpkg-dev, lintian, systemd for systemd-analyze, binutils). Idempotent: a peerdist package left by an
# interrupted run is purged first, and everything this script installs is purged again at the end.
#  1. npm: `npm pack` (prepack compiles), the tarball holds what it should, `npm install -g` into a
#     temporary prefix, then the installed `peerdist --version`, `hash`, and `get` through `daemon`
#     from a `serve` origin, all on loopback; the installed tree is not changed by running it.
#  2. Debian: `npm run deb` from the same tarball, lintian, install with dpkg, `systemd-analyze verify`
#     the units, the daemon started as the unit's ExecStart would (as the peerdist user), `peerdist status`
#     answers; reinstall (the upgrade path) keeps config, cache and secret; purge with the default answer
#     keeps /var/lib/peerdist and the user and nothing else; purge when asked removes the state too.
# Network: loopback only (daemons bound to 127.0.0.1, discovery on the loopback interface, no DNS-SD).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
say() { echo "[check-packaging] ${SECONDS}s: $*"; }
fail() {
  echo "[check-packaging] FAIL: $*" >&2
  exit 1
}
[ "$(id -u)" = 0 ] || fail "needs root (it installs and purges the .deb)"
for t in dpkg-deb lintian systemd-analyze objdump runuser debconf-set-selections; do
  command -v "$t" >/dev/null || fail "$t is missing (.ci/run installs it)"
done
export DEBIAN_FRONTEND=noninteractive
version=$(node -p 'require("./package.json").version')
tmp=$(mktemp -d /tmp/peerdist-pkgcheck.XXXXXX)
chmod 0755 "$tmp"
pids=()
user_existed=no
getent passwd peerdist >/dev/null && user_existed=yes

purge_all() {
  # Purge the package and its state (the debconf answer preseeded to yes).
  if dpkg-query -W -f='${Status}' peerdist 2>/dev/null | grep -qv 'not-installed'; then
    echo 'peerdist peerdist/purge-state boolean true' | debconf-set-selections
    dpkg --purge peerdist >/dev/null
  fi
}
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  purge_all || true
  [ "$user_existed" = no ] && getent passwd peerdist >/dev/null && deluser --quiet --system peerdist >/dev/null 2>&1 || true
  rm -rf "$tmp"
  [ $rc = 0 ] || echo "[check-packaging] failed (exit $rc)" >&2
}
trap cleanup EXIT

free_port() { # free_port tcp|udp
  node -e "const s=require('$1'==='udp'?'node:dgram':'node:net');
    if('$1'==='udp'){const u=s.createSocket('udp4');u.bind(0,'127.0.0.1',()=>{console.log(u.address().port);u.close();});}
    else{const v=s.createServer();v.listen(0,'127.0.0.1',()=>{console.log(v.address().port);v.close();});}"
}
# wait_for FILE PATTERN PID: until FILE has a line matching PATTERN; fails when PID exits first.
# (A guard against a hang, not a timed assertion: 120 s is far beyond any start seen.)
wait_for() {
  local i
  for ((i = 0; i < 1200; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || fail "process $3 exited before printing '$2': $(cat "$1" "$1.err" 2>/dev/null | tail -5)"
    sleep 0.1
  done
  fail "no '$2' in $1 after 120 s"
}

# A leftover from an interrupted run.
purge_all

# ---------------------------------------------------------------- 1. npm
say "npm pack (prepack compiles src/)"
npm pack --silent --pack-destination "$tmp" >/dev/null
tgz=$tmp/peerdist-$version.tgz
tar -tzf "$tgz" | sort >"$tmp/contents"
for f in dist/src/cli/main.js bin/peerdist.js packaging/peerdist.service packaging/peerdist-origin@.service \
  packaging/peerdist-hosted-cache.service protocol/pccrr.md README.md CHANGELOG.md LICENSE package.json; do
  grep -qx "package/$f" "$tmp/contents" || fail "the npm package lacks $f"
done
if grep -E '^package/(test|testkit|bench|src|scripts|fixtures|dist/test|dist/testkit|dist/bench)/|\.map$|\.ts$' \
  "$tmp/contents"; then
  fail "the npm package ships tests, test kit, benchmarks, sources or source maps (above)"
fi

say "npm install -g into a temporary prefix"
prefix=$tmp/prefix
npm install -g --prefix "$prefix" --no-audit --no-fund --loglevel=error "$tgz" >/dev/null
pd=$prefix/bin/peerdist
installed=$prefix/lib/node_modules/peerdist
[ -x "$pd" ] || fail "no $pd"
[ ! -e "$installed/node_modules/typescript" ] || fail "dev dependencies were installed"
touch "$tmp/before-run"
sleep 1 # mtime granularity: anything written by the runs below is newer

v=$("$pd" --version)
[ "$v" = "$version" ] || fail "installed peerdist --version says '$v', package.json $version"
say "installed peerdist --version: $v"

head -c 3145728 /dev/urandom >"$tmp/f.bin"
"$pd" hash "$tmp/f.bin" --secret-hex 000102030405060708090a0b0c0d0e0f --content-version 2 -o "$tmp/f.ci" --json \
  >"$tmp/hash.json"
# The same file hashed by this tree's own build: the installed code gives the same bytes.
node "$repo/bin/peerdist.js" hash "$tmp/f.bin" --secret-hex 000102030405060708090a0b0c0d0e0f --content-version 2 \
  -o "$tmp/f.ref.ci" >/dev/null
cmp -s "$tmp/f.ci" "$tmp/f.ref.ci" || fail "installed peerdist hash differs from the tree's"
"$pd" info "$tmp/f.ci" | grep -q 'version 2' || fail "installed peerdist info cannot read its content information"
say "installed peerdist hash: $(stat -c %s "$tmp/f.ci") bytes of content information, same as the tree's"

mkdir -p "$tmp/www"
cp "$tmp/f.bin" "$tmp/www/f.bin"
PEERDIST_LOG=warn "$pd" serve "$tmp/www" --host 127.0.0.1 --port 0 --state-dir "$tmp/origin-state" \
  >"$tmp/serve.out" 2>"$tmp/serve.out.err" &
pids+=($!)
wait_for "$tmp/serve.out" '^listening on' "${pids[-1]}"
url="$(sed -n 's/^listening on \(http:[^ ]*\)$/\1/p' "$tmp/serve.out")f.bin"
PEERDIST_LOG=warn "$pd" daemon --state-dir "$tmp/daemon-state" --listen 127.0.0.1:0 --interface 127.0.0.1 \
  --admin 127.0.0.1:0 --discovery-port "$(free_port udp)" --no-presence >"$tmp/daemon.out" 2>"$tmp/daemon.out.err" &
pids+=($!)
wait_for "$tmp/daemon.out" '"event":"ready"' "${pids[-1]}"
admin=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").split("\n")[0]).admin)' \
  "$tmp/daemon.out")
"$pd" get "$url" -o "$tmp/got.bin" --daemon "$admin" --json >"$tmp/get.json"
cmp -s "$tmp/got.bin" "$tmp/f.bin" || fail "peerdist get through the installed daemon returned other bytes"
grep -q '"peerdist":true' "$tmp/get.json" || fail "the download did not use PeerDist: $(cat "$tmp/get.json")"
"$pd" status --daemon "$admin" | grep -q '^totals: origin 3.0 MiB' || fail "status does not count the download"
say "installed daemon + get from a local serve: 3 MiB, PeerDist, same bytes"
for p in "${pids[@]}"; do
  kill "$p"
  wait "$p" || true
done
pids=()
changed=$(find "$installed" -newer "$tmp/before-run" | head -5)
[ -z "$changed" ] || fail "running the installed peerdist changed its tree: $changed"
say "the installed tree was not changed by running it (no install, no compile)"

# ---------------------------------------------------------------- 2. Debian
say "npm run deb"
deb=$(PEERDIST_DEB_OUT="$tmp/deb" bash scripts/build-deb.sh "$tgz" | tail -1)
say "lintian $(basename "$deb")"
# Warnings and errors fail the check; the info tags that remain are explained in packaging/README.md.
lint_rc=0
lintian --fail-on error,warning "$deb" >"$tmp/lintian.txt" 2>&1 || lint_rc=$?
grep -v 'running with root privileges' "$tmp/lintian.txt" || true
[ $lint_rc = 0 ] || fail "lintian reports warnings or errors (exit $lint_rc)"

# The package depends on nodejs (>= 20): satisfied by the Debian package of the Node.js that runs this.
node_pkg=$(dpkg-query -W -f='${Version}' nodejs 2>/dev/null || true)
[ -n "$node_pkg" ] && dpkg --compare-versions "$node_pkg" ge 20 ||
  fail "Depends: nodejs (>= 20) is not met by a Debian package here (nodejs '${node_pkg}'): install Node.js 20 from a .deb"

install_deb() { dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || fail "dpkg -i: $(cat "$tmp/dpkg.log")"; }
say "dpkg -i"
install_deb
[ "$(/usr/bin/peerdist --version)" = "$version" ] || fail "/usr/bin/peerdist --version"
getent passwd peerdist | grep -q ':/var/lib/peerdist:/usr/sbin/nologin$' || fail "user: $(getent passwd peerdist)"
[ "$(stat -c '%U:%G %a' /var/lib/peerdist)" = "peerdist:peerdist 750" ] || fail "/var/lib/peerdist: $(stat -c '%U:%G %a' /var/lib/peerdist)"
dpkg-query -W -f='${Conffiles}\n' peerdist | grep -q '/etc/peerdist/config.json' || fail "config.json is no conffile"
[ -L /etc/systemd/system/multi-user.target.wants/peerdist.service ] || fail "the daemon was not enabled"
[ ! -e /etc/systemd/system/multi-user.target.wants/peerdist-hosted-cache.service ] || fail "hosted cache enabled"

say "systemd-analyze verify"
mkdir -p "$tmp/units"
cp /usr/lib/systemd/system/peerdist-origin@.service "$tmp/units/peerdist-origin@site1.service"
systemd-analyze verify --man=no /usr/lib/systemd/system/peerdist.service \
  /usr/lib/systemd/system/peerdist-hosted-cache.service "$tmp/units/peerdist-origin@site1.service" \
  >"$tmp/verify.log" 2>&1 || fail "systemd-analyze verify: $(cat "$tmp/verify.log")"
# verify prints some complaints without failing; ours must have none.
if grep -i 'peerdist' "$tmp/verify.log"; then fail "systemd-analyze verify complains about our units (above)"; fi

say "the daemon as the unit starts it, as the peerdist user"
# Loopback only here: the admin's way, in the conffile.
admin_port=$(free_port tcp)
cat >/etc/peerdist/config.json <<JSON
{ "listen": "127.0.0.1:0", "interface": "127.0.0.1", "admin": "127.0.0.1:$admin_port",
  "discoveryPort": $(free_port udp), "presence": false }
JSON
unit=/usr/lib/systemd/system/peerdist.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
mapfile -t unit_env < <(sed -n 's/^Environment=//p' "$unit" | sed 's/^"\(.*\)"$/\1/')
user=$(sed -n 's/^User=//p' "$unit")
umask_unit=$(sed -n 's/^UMask=//p' "$unit")
# shellcheck disable=SC2086 # ExecStart is split into words as systemd does (no quotes in it)
(umask "$umask_unit" && exec runuser -u "$user" -- env PEERDIST_LOG=warn "${unit_env[@]}" $exec_start) \
  >"$tmp/unit.out" 2>"$tmp/unit.out.err" &
pids+=($!)
wait_for "$tmp/unit.out" '"event":"ready"' "${pids[-1]}"
/usr/bin/peerdist status --daemon "127.0.0.1:$admin_port" >"$tmp/status.txt" || fail "peerdist status: no answer"
grep -q '^totals:' "$tmp/status.txt" || fail "peerdist status: $(cat "$tmp/status.txt")"
[ "$(stat -c %U /var/lib/peerdist/cache)" = peerdist ] || fail "the cache is not the peerdist user's"
say "peerdist status answers; the cache is in /var/lib/peerdist/cache, owned by peerdist"
kill "${pids[-1]}"
wait "${pids[-1]}" || true
pids=()
runuser -u peerdist -- /usr/bin/peerdist secret export --state-dir /var/lib/peerdist >"$tmp/secret1"

say "reinstall (the upgrade path): config, cache and secret stay"
install_deb
grep -q "$admin_port" /etc/peerdist/config.json || fail "the edited config.json was replaced"
[ -d /var/lib/peerdist/cache ] || fail "the cache did not survive"
runuser -u peerdist -- /usr/bin/peerdist secret export --state-dir /var/lib/peerdist >"$tmp/secret2"
cmp -s "$tmp/secret1" "$tmp/secret2" || fail "the origin secret changed"

left_over() {
  local f
  for f in /usr/lib/peerdist /usr/bin/peerdist /etc/peerdist /usr/share/doc/peerdist /usr/share/man/man1/peerdist.1.gz \
    /usr/lib/systemd/system/peerdist.service /usr/lib/systemd/system/peerdist-hosted-cache.service \
    /usr/lib/systemd/system/peerdist-origin@.service /etc/systemd/system/multi-user.target.wants/peerdist.service \
    /etc/systemd/system/peerdist.service /var/lib/systemd/deb-systemd-helper-enabled/peerdist.service.dsh-also \
    /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/peerdist.service \
    /var/lib/systemd/deb-systemd-helper-masked/peerdist.service; do
    if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi
  done
  if dpkg-query -W -f='${Status}' peerdist 2>/dev/null | grep -qv not-installed; then echo "dpkg: $(dpkg-query -W -f='${Status}' peerdist)"; fi
  if debconf-show peerdist 2>/dev/null | grep -q .; then echo "debconf: $(debconf-show peerdist)"; fi
}
say "purge with the default answer: the state and the user stay, nothing else"
dpkg --purge peerdist >"$tmp/dpkg.log" 2>&1 || fail "dpkg --purge: $(cat "$tmp/dpkg.log")"
left=$(left_over)
[ -z "$left" ] || fail "left after purge: $left"
getent passwd peerdist >/dev/null || fail "the peerdist user is gone (policy keeps system users)"
[ -s /var/lib/peerdist/origin/secret ] && [ -d /var/lib/peerdist/cache ] || fail "purge removed the state unasked"

say "install again, purge with peerdist/purge-state = true: the state goes too"
install_deb
cmp -s "$tmp/secret1" <(runuser -u peerdist -- /usr/bin/peerdist secret export --state-dir /var/lib/peerdist) ||
  fail "the secret kept at purge was not used again"
echo 'peerdist peerdist/purge-state boolean true' | debconf-set-selections
dpkg --purge peerdist >"$tmp/dpkg.log" 2>&1 || fail "dpkg --purge: $(cat "$tmp/dpkg.log")"
left=$(left_over)
[ -z "$left" ] || fail "left after purge: $left"
[ ! -e /var/lib/peerdist ] || fail "/var/lib/peerdist is still there after purge-state = true"
getent passwd peerdist >/dev/null || fail "the peerdist user is gone (policy keeps system users)"
say "ok: npm package and Debian package"
