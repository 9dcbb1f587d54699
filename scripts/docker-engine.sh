#!/usr/bin/env bash
# Make sure a Docker engine answers, or stop the one this script started.
#   docker-engine.sh ensure   install (Debian/Ubuntu: apt docker.io) and start dockerd if none answers
#   docker-engine.sh stop     stop dockerd if `ensure` started it (CI and `make test` leave nothing running)
set -euo pipefail
state_dir=${AIRLAUNCH_STATE_DIR:-.stack}
mkdir -p "$state_dir"
pid_file="$state_dir/dockerd.pid"

case "${1:-}" in
ensure)
  if docker info >/dev/null 2>&1; then exit 0; fi
  if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      echo "error: no Docker engine answers and I can only install one as root on Debian/Ubuntu." >&2
      echo "       Install Docker (https://docs.docker.com/engine/install/) and start it, then retry." >&2
      exit 1
    fi
    "$(dirname "$0")/system-packages.sh" docker.io
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "error: dockerd is installed but not running; start it (sudo systemctl start docker) and retry." >&2
    exit 1
  fi
  echo "==> Starting dockerd (log: $state_dir/dockerd.log)"
  # Without the descriptors this shell inherited beyond stdin/out/err: started from a command run under
  # `flock /tmp/airlaunch-stack.lock`, dockerd (and its containerd) would keep the lock's descriptor open,
  # and so the lock held, for as long as the engine runs.
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec nohup dockerd >"$state_dir/dockerd.log" 2>&1
  ) &
  echo $! >"$pid_file"
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
  done
  echo "error: dockerd did not answer within 60 s; see $state_dir/dockerd.log" >&2
  exit 1
  ;;
stop)
  [ -f "$pid_file" ] || exit 0
  pid=$(cat "$pid_file")
  if kill -0 "$pid" 2>/dev/null; then
    echo "==> Stopping the dockerd this project started (pid $pid)"
    kill "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -f "$pid_file"
  ;;
*)
  echo "usage: $0 ensure|stop" >&2
  exit 2
  ;;
esac
