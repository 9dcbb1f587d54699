"""Tutorial task two: sleeps a random time and returns that time."""

import random
import time

from airlaunch.runtime import task

params = task.params()
low, high = float(params.get("min_seconds", 1)), float(params.get("max_seconds", 5))
if not 0 <= low <= high:
    raise ValueError(f"need 0 <= min_seconds <= max_seconds, got {low} and {high}")
seconds = round(random.uniform(low, high), 3)
print(f"sleeping {seconds} s")
time.sleep(seconds)
print(f"slept {seconds} s")
task.save_result({"sleep_seconds": seconds})
