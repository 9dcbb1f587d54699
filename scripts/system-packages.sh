#!/usr/bin/env bash
# Install the Debian packages named that are missing, in one apt-get call:
#   scripts/system-packages.sh [--if-root] docker.io debootstrap docker-compose
# Nothing happens when all are installed. Needs root on Debian/Ubuntu; elsewhere it says what to
# install (with --if-root it does nothing there: the step that needs a package says so itself).
set -euo pipefail
if [ "${1:-}" = --if-root ]; then
  shift
  { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; } || exit 0
fi
[ $# -gt 0 ] || exit 0
# One apt at a time (parallel make jobs may each need a package); re-check once we hold the lock.
exec 9>/tmp/airlaunch-apt.lock
flock 9
missing=()
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing system packages: ${missing[*]}; install them (as root on Debian/Ubuntu: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "==> Installing system packages: ${missing[*]} (apt-get)"
# Another apt run (not ours) may hold apt's own lock: wait for it rather than fail.
apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
