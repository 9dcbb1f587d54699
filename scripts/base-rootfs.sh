#!/usr/bin/env bash
# Make a Debian root file system for the base images, only where it is needed:
#   scripts/base-rootfs.sh RELEASE OUT.tar
# Where a container registry answers (python:*-slim can be pulled) or the base image was
# imported before, OUT is left empty; otherwise it is a debootstrap of RELEASE (about 80 s, no
# Docker engine needed, so it runs while the engine is installed). scripts/base-image.sh uses it.
set -euo pipefail
release=$1 out=$2
mkdir -p "$(dirname "$out")"
code=$(curl -s -o /dev/null -w "%{http_code}" --max-time 5 https://registry-1.docker.io/v2/ || true)
# The engine may not be started yet: then its image store on disk tells whether the base exists.
imported() {
  docker image inspect "airlaunch/base:$release" >/dev/null 2>&1 ||
    grep -qs "\"airlaunch/base:$release\"" /var/lib/docker/image/*/repositories.json
}
if [ "$code" = 401 ] || [ "$code" = 200 ] || imported; then
  : > "$out"; exit 0
fi
"$(dirname "$0")/system-packages.sh" debootstrap
echo "==> No container registry answers: making a Debian $release root file system with debootstrap (about 80 s)"
root=$(mktemp -d)
trap 'rm -rf "$root" "$out.tmp"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$release" "$root" http://deb.debian.org/debian >"$out.log" 2>&1 || { echo "error: debootstrap failed; see $out.log" >&2; exit 1; }
tar -C "$root" -c . > "$out.tmp"
mv "$out.tmp" "$out"
