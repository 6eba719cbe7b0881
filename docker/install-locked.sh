#!/bin/sh
# Install poetry.lock's packages for the given dependency groups into a virtualenv: every file
# hash-checked, wheels only; the user's own folders (path dependencies in the lock) are built from
# source by the lock's `build` group (setuptools), installed hash-checked first, with no build
# isolation and no index: nothing unlocked is downloaded. The image build and `make client` both
# use this, so both get exactly the same versions; `make tools` installs tools/poetry.lock with it.
# usage: install-locked.sh POETRY PROJECT_DIR VENV_DIR GROUPS [FROM_SOURCE]
#   GROUPS: comma-separated, main is implied
#   FROM_SOURCE: comma-separated packages published only as source (tools/: sslyze). Their sdists are
#   hash-checked too, and built by the lock's own setuptools, installed first: pip's build isolation
#   would fetch unlocked build tools.
set -eu
poetry=$1 project=$2 venv=$3 groups=$4 from_source=${5:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$poetry" export --directory "$project" --only "main${groups:+,$groups}" \
  --format requirements.txt --output "$work/all.txt"
# a path dependency is one line `NAME @ file:///...`: no hash can pin a folder
grep -v ' @ file://' "$work/all.txt" > "$work/locked.txt" || true
grep ' @ file://' "$work/all.txt" > "$work/local.txt" || true
if [ -n "$from_source" ]; then
  # an entry is its `name==version` line and the indented --hash lines under it
  awk '/^[^ ]/ { keep = /^setuptools==/ } keep' "$work/locked.txt" > "$work/build.txt"
  "$venv/bin/python" -m pip install --no-deps --require-hashes --only-binary=:all: -r "$work/build.txt"
fi
"$venv/bin/python" -m pip install --no-deps --require-hashes --only-binary=:all: \
  ${from_source:+--no-binary="$from_source" --no-build-isolation} -r "$work/locked.txt"
if [ -s "$work/local.txt" ]; then
  "$poetry" export --directory "$project" --only build --format requirements.txt \
    --output "$work/build-backend.txt"
  "$venv/bin/python" -m pip install --no-deps --require-hashes --only-binary=:all: \
    -r "$work/build-backend.txt"
  "$venv/bin/python" -m pip install --no-deps --no-build-isolation --no-index -r "$work/local.txt" ||
    { echo "install-locked.sh: a folder under packages/ did not build; it is built with the" \
        "lock's setuptools only (no build isolation, no download): give it" \
        "build-backend = \"setuptools.build_meta\" (see the README, Your own packages)" >&2
      exit 1; }
fi
