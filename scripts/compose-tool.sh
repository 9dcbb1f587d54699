#!/usr/bin/env bash
# Make sure a compose tool is installed:  scripts/compose-tool.sh ensure
# The Docker compose plugin (`docker compose`) or docker-compose will do; when neither is there,
# Debian's docker-compose package (Compose 1.29, Compose Specification files) is installed.
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; then exit 0; fi
"$(dirname "$0")/system-packages.sh" docker-compose
command -v docker-compose >/dev/null 2>&1 || { echo "error: docker-compose is still missing after its install" >&2; exit 1; }
