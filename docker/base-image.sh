#!/usr/bin/env bash
# Prints the base image to build on: the public slim Python image (the Dockerfile's default, pinned by
# digest) when the engine has it or can pull it; otherwise (an engine with no registry) a Debian
# bookworm image made from Debian packages with debootstrap and `docker import`, built once and reused.
set -euo pipefail
docker=${DOCKER:-docker}
public=${1:-$(sed -n 's/^ARG BASE_IMAGE=//p' "$(dirname "$0")/../Dockerfile")}
local_tag=${2:-dask-tls-base:bookworm}

if "$docker" image inspect "$public" >/dev/null 2>&1 || "$docker" pull -q "$public" >/dev/null 2>&1; then
  echo "$public"
  exit 0
fi
if ! "$docker" image inspect "$local_tag" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "no registry reachable and no debootstrap: apt-get install debootstrap" >&2; exit 1; }
  echo "no registry reachable: building $local_tag from Debian packages (debootstrap, about a minute)" >&2
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" >&2
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar -C "$root" -c . | "$docker" import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$local_tag" >&2
fi
echo "$local_tag"
