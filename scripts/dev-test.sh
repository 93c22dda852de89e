#!/usr/bin/env bash
# Development loop for one area with a private build directory, so parallel builds don't collide:
#   scripts/dev-test.sh NAME [test-path-filter ...]
# compiles everything into .build/NAME and runs tap on .build/NAME/test/<filter>.
# Type errors are printed but do not stop the run (other areas may be mid-edit).
set -u
name=$1; shift
cd "$(dirname "$0")/.."
out=.build/$name
node node_modules/typescript/bin/tsc -p . --outDir "$out" --tsBuildInfoFile "$out/.tsbuildinfo" | head -60
files=()
for f in "$@"; do files+=("$out/test/$f"); done
[ ${#files[@]} -gt 0 ] || files=("$out/test")
PEERDIST_TEST=1 npx tap --disable-coverage --timeout=300 "${files[@]}"
