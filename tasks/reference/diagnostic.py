"""Checks the platform (action echo), or misbehaves on purpose: exit, raise, sleep, bad_result."""

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
elif action == "bad_result":
    with open(os.environ["AIRLAUNCH_RESULT_FILE"], "w") as result:
        result.write("{not json")
else:
    raise ValueError(f"unknown action {action!r}: use echo, exit, raise, sleep or bad_result")
