"""Tutorial task three: reads task two's value from its params and computes with it."""

from airlaunch.runtime import task

params = task.params()
if "task_two_value" not in params:
    raise KeyError("param 'task_two_value' is missing: pass task two's sleep_seconds result")
value = float(params["task_two_value"])
factor = float(params.get("factor", 2))
product = round(value * factor, 3)
print(f"task two slept {value} s; times {factor} is {product}")
task.save_result({"task_two_value": value, "factor": factor, "product": product})
