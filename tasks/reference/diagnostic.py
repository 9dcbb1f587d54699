"""Checks the platform (echo), uses resources (burn, allocate, log) or misbehaves: exit, raise, sleep, bad_result;
shows what a catalog entry's secrets gave it (secret)."""

import hashlib
import os
import platform
import sys
import time

from airlaunch.runtime import task

params = task.params()
action = params.get("action", "echo")
print(f"diagnostic action={action} on {platform.node()} python {platform.python_version()} uid {os.getuid()}")
if action == "echo":
    task.save_result({"python": platform.python_version(), "uid": os.getuid(), "echo": params.get("message", "ok")})
elif action == "exit":
    time.sleep(float(params.get("exit_after", 0)))
    print(f"exiting with code {params.get('code', 3)}", flush=True)
    sys.exit(int(params.get("code", 3)))
elif action == "raise":
    raise RuntimeError(params.get("message", "diagnostic failure"))
elif action == "sleep":
    seconds = float(params.get("seconds", 60))
    for second in range(int(seconds)):
        print(f"sleeping: {second} of {seconds:g} s", flush=True)
        time.sleep(1)
    task.save_result({"slept": seconds})
elif action == "burn":  # this much CPU time, however long the container's CPU quota makes it take
    target = float(params.get("cpu_seconds", 1))
    while time.process_time() < target:
        sum(i * i for i in range(10_000))
    task.save_result({"cpu_seconds": time.process_time()})
elif action == "allocate":  # resident memory, 16 MiB at a time: past the container's limit the kernel kills us
    mib, held = int(params.get("mib", 64)), []
    for chunk in range(0, mib, 16):
        held.append(b"\x01" * (min(16, mib - chunk) * 1024 * 1024))  # written, so resident
        print(f"allocated {chunk + len(held[-1]) // (1024 * 1024)} MiB", flush=True)
    time.sleep(float(params.get("hold_seconds", 0.5)))
    task.save_result({"allocated_mib": sum(len(b) for b in held) // (1024 * 1024)})
elif action == "log":  # a log burst: log_mib MiB of numbered 100-byte lines, as fast as it can print them
    lines = int(float(params.get("log_mib", 100)) * 1024 * 1024) // 100
    filler = "x" * 78
    write = sys.stdout.write
    for number in range(lines):
        write(f"burst line {number:09d} {filler}\n")
    sys.stdout.flush()
    task.save_result({"log_lines": lines})
elif action == "peek":  # what the task's command can see of the runtime's run session (make smoke checks: nothing)
    try:
        with open("/proc/1/environ", "rb") as environ:
            seen = "readable, holds the run session" if b"AIRLAUNCH_RUN_CREDENTIALS" in environ.read() else "readable"
    except OSError as exc:
        seen = f"denied ({exc.strerror})"
    mine = "AIRLAUNCH_RUN_CREDENTIALS" in os.environ
    task.save_result({"proc_1_environ": seen, "own_environment_has_run_session": mine})
elif action == "secret":  # prints each secret variable it got (the runtime masks the values in all it keeps)
    names = [n for n in os.environ.get("AIRLAUNCH_SECRET_NAMES", "").split(",") if n]
    seen = {}
    for name in [params["name"]] if params.get("name") else names:
        value = os.environ.get(name)
        print(f"secret {name} = {value}", flush=True)
        # whether it came, and a fingerprint (8 hex digits of its SHA-256) to tell values apart: never the value
        seen[name] = {
            "present": value is not None,
            "fingerprint": hashlib.sha256((value or "").encode()).hexdigest()[:8],
        }
    task.save_result({"secrets": seen, "secret_names": names})
elif action == "bad_result":
    with open(os.environ["AIRLAUNCH_RESULT_FILE"], "w") as result:
        result.write("{not json")
else:
    raise ValueError(
        f"unknown action {action!r}: use echo, peek, secret, burn, allocate, log, exit, raise, sleep or bad_result"
    )
