#!/usr/bin/env bash
# Print the base image to build airlaunch images from:  scripts/base-image.sh [bookworm|trixie]
#   bookworm (default): every airlaunch image (tasks, launcher); Python 3.11 here, 3.12 from a registry.
#   trixie: the compose stack's service images (LocalStack needs Python >= 3.12, Airflow), Python 3.13.
# $BASE_IMAGE (bookworm) or $TRIXIE_BASE_IMAGE (trixie) if set; else the registry image when it can
# be had (present or pulled); else, on a machine that reaches no container registry, a Debian image
# imported from a debootstrap root file system (airlaunch/base:<release>, see base-rootfs.sh).
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
exec 9>"/tmp/airlaunch-base-$release.lock"  # parallel image builds: one import
flock 9
if docker image inspect "$local_base" >/dev/null 2>&1; then echo "$local_base"; exit 0; fi
# Offline: import the root file system scripts/base-rootfs.sh made (make it now if it is empty).
rootfs=${AIRLAUNCH_BUILD_DIR:-.build}/rootfs-$release.tar
[ -s "$rootfs" ] || "$(dirname "$0")/base-rootfs.sh" "$release" "$rootfs" >&2
echo "==> Importing $local_base from $rootfs" >&2
docker import - "$local_base" < "$rootfs" >/dev/null
: > "$rootfs"  # imported: keep the stamp, free the space
echo "$local_base"
