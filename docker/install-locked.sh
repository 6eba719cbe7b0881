#!/bin/sh
# Install poetry.lock's packages for the given dependency groups into a virtualenv: every file
# hash-checked, wheels only; the user's own folders (path dependencies in the lock) are built from
# source. The image build and `make client` both use this, so both get exactly the same versions.
# usage: install-locked.sh POETRY PROJECT_DIR VENV_DIR GROUPS   (GROUPS: comma-separated, main is implied)
set -eu
poetry=$1 project=$2 venv=$3 groups=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$poetry" export --directory "$project" --only "main${groups:+,$groups}" \
  --format requirements.txt --output "$work/all.txt"
# a path dependency is one line `NAME @ file:///...`: no hash can pin a folder
grep -v ' @ file://' "$work/all.txt" > "$work/locked.txt" || true
grep ' @ file://' "$work/all.txt" > "$work/local.txt" || true
"$venv/bin/python" -m pip install --no-deps --require-hashes --only-binary=:all: -r "$work/locked.txt"
if [ -s "$work/local.txt" ]; then
  "$venv/bin/python" -m pip install --no-deps -r "$work/local.txt"
fi
