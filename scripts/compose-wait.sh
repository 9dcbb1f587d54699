#!/usr/bin/env bash
# Wait until every container of a compose project is healthy (a one-shot job: exited with 0).
#   scripts/compose-wait.sh PROJECT [TIMEOUT_SECONDS]
# Exits 1 naming the services that failed or did not become healthy in time.
set -euo pipefail
project=${1:?usage: scripts/compose-wait.sh PROJECT [TIMEOUT_SECONDS]}
timeout=${2:-300}
start=$SECONDS
while :; do
  pending="" failed="" count=0
  for id in $(docker ps -aq --filter "label=com.docker.compose.project=$project"); do
    count=$((count + 1))
    read -r service state health code < <(docker inspect -f \
      '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}}' "$id")
    case "$state/$health" in
      running/healthy|running/none) ;;  # none: a service without a healthcheck
      running/unhealthy) failed+=" $service(unhealthy)" ;;
      exited/*|dead/*) [ "$code" = 0 ] || failed+=" $service(exited $code)" ;;
      *) pending+=" $service" ;;
    esac
  done
  if [ "$count" = 0 ]; then
    echo "error: compose project '$project' has no containers; start it with make up" >&2; exit 1
  fi
  if [ -n "$failed" ]; then
    echo "error: not healthy:$failed; see make compose-logs SERVICE=<name>" >&2; exit 1
  fi
  if [ -z "$pending" ]; then echo "==> all $count containers healthy after $((SECONDS - start)) s"; exit 0; fi
  if [ $((SECONDS - start)) -ge "$timeout" ]; then
    echo "error: still starting after $timeout s:$pending; see make compose-logs SERVICE=<name>" >&2; exit 1
  fi
  sleep 2
done
