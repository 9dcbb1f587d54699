#!/usr/bin/env bash
# Print the base image to build every airlaunch image from.
# $BASE_IMAGE if set; else python:3.12-slim when it can be had (present or pulled); else, on a
# machine that reaches no container registry, a Debian bookworm image made with debootstrap.
set -euo pipefail
if [ -n "${BASE_IMAGE:-}" ]; then echo "$BASE_IMAGE"; exit 0; fi
wanted=python:3.12-slim
local_base=airlaunch/base:bookworm
if docker image inspect "$wanted" >/dev/null 2>&1 || docker pull -q "$wanted" >/dev/null 2>&1; then
  echo "$wanted"; exit 0
fi
if docker image inspect "$local_base" >/dev/null 2>&1; then echo "$local_base"; exit 0; fi
echo "==> No registry reachable: building $local_base with debootstrap (about 90 s)" >&2
command -v debootstrap >/dev/null 2>&1 || {
  [ "$(id -u)" = 0 ] || { echo "error: need debootstrap (apt-get install debootstrap) or BASE_IMAGE=..." >&2; exit 1; }
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" http://deb.debian.org/debian >&2
tar -C "$root" -c . | docker import - "$local_base" >&2
echo "$local_base"
