#!/usr/bin/env bash
# Print the base image to build airlaunch images from:  scripts/base-image.sh [bookworm|trixie]
#   bookworm (default): every airlaunch image (tasks, launcher); Python 3.11 here, 3.12 from a registry.
#   trixie: the compose stack's service images (LocalStack needs Python >= 3.12, Airflow), Python 3.13.
# $BASE_IMAGE (bookworm) or $TRIXIE_BASE_IMAGE (trixie) if set; else the registry image when it can
# be had (present or pulled); else, on a machine that reaches no container registry, a Debian image
# made with debootstrap (airlaunch/base:<release>).
set -euo pipefail
release=${1:-bookworm}
case "$release" in
  bookworm) override=${BASE_IMAGE:-}; wanted=python:3.12-slim ;;
  trixie) override=${TRIXIE_BASE_IMAGE:-}; wanted=python:3.13-slim-trixie ;;
  *) echo "error: unknown release '$release' (use bookworm or trixie)" >&2; exit 2 ;;
esac
if [ -n "$override" ]; then echo "$override"; exit 0; fi
local_base=airlaunch/base:$release
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
  "$release" "$root" http://deb.debian.org/debian >&2
tar -C "$root" -c . | docker import - "$local_base" >&2
echo "$local_base"
