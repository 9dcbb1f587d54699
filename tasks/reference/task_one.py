"""Tutorial task one: says its name."""

from airlaunch.runtime import task

run = task.run_info()
message = f"my name is {run['task_id']}"
print(message)
task.save_result({"message": message, "map_index": run["map_index"]})
