#!/usr/bin/env bash
# Print the path of a working Python interpreter of the wanted minor version (e.g. 3.12).
set -euo pipefail
want=$1
for candidate in $(ls -d "$HOME"/.pyenv/versions/"$want".*/bin/python"$want" 2>/dev/null | sort -V -r) \
  "$(command -v "python$want" || true)"; do
  if [ -n "$candidate" ] && "$candidate" -c 'import venv' >/dev/null 2>&1; then echo "$candidate"; exit 0; fi
done
echo "error: Python $want not found; install it (e.g. apt-get install python$want, or pyenv install $want)" >&2
exit 1
