"""The task runtime handles SIGTERM from its first moment: nothing heavy is imported before its handler is set.

A SIGTERM to a container's PID 1 that has no handler yet is dropped by the kernel; the longer the
runtime imports before it sets one, the wider that window (botocore and urllib3 alone take a good part
of a second on a busy host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("botocore", "boto3", "urllib3", "yaml", "airflow", "s3transfer")

# Records which heavy modules are loaded when the runtime first sets a SIGTERM handler, then leaves.
PROBE = f"""
import json, os, signal, sys
real = signal.signal
def spy(sig, handler):
    if sig == signal.SIGTERM:
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
        print(json.dumps(loaded), flush=True)
        os._exit(0)
    return real(sig, handler)
signal.signal = spy
from airlaunch.runtime import entrypoint
entrypoint.main(["--", "true"])
"""


def test_nothing_heavy_is_loaded_before_the_sigterm_handler() -> None:
    env = {**os.environ, "AIRLAUNCH_BUCKET": "b", "AIRLAUNCH_PREFIX": "runs/d/r/t/-1/1/"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_the_entrypoint_and_the_runtime_settings_import_nothing_heavy() -> None:
    code = (
        "import sys, json; from airlaunch.runtime import entrypoint, settings; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
