"""The task runtime's settings, besides what the launcher passes it (protocol.ENV_*).

Standard library only: the runtime reads these before anything slow is imported, and its SIGTERM
handler is set before that (airlaunch.runtime.entrypoint). The cost estimate (airlaunch.cost) uses
the same log-flush schedule to count a try's S3 requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airlaunch.config import env


@dataclass(frozen=True)
class RuntimeSettings:
    """Settings of the in-container task runtime, besides what the launcher passes (protocol.ENV_*)."""

    log_flush_seconds: float = field(default_factory=lambda: float(env("AIRLAUNCH_LOG_FLUSH_SECONDS", "2")))
    """AIRLAUNCH_LOG_FLUSH_SECONDS: the shortest interval between uploads of the running task's log."""
    log_flush_max_seconds: float = field(default_factory=lambda: float(env("AIRLAUNCH_LOG_FLUSH_MAX_SECONDS", "15")))
    """AIRLAUNCH_LOG_FLUSH_MAX_SECONDS: the longest; in between, a tenth of the task's age (``log_flush_interval``)."""
    log_tail_lines: int = field(default_factory=lambda: int(env("AIRLAUNCH_LOG_TAIL_LINES", "20")))
    """AIRLAUNCH_LOG_TAIL_LINES: how many last log lines status.json keeps."""
    kill_grace_seconds: float = field(default_factory=lambda: float(env("AIRLAUNCH_KILL_GRACE_SECONDS", "5")))
    """AIRLAUNCH_KILL_GRACE_SECONDS: time the task gets after SIGTERM before SIGKILL."""
    work_dir: str = field(default_factory=lambda: env("AIRLAUNCH_WORK_DIR", "/tmp/airlaunch"))
    """AIRLAUNCH_WORK_DIR: scratch folder for params, result, log and notebook."""
    log_part_bytes: int = field(default_factory=lambda: int(env("AIRLAUNCH_LOG_PART_BYTES", str(1024 * 1024))))
    """AIRLAUNCH_LOG_PART_BYTES: the largest part of the running log uploaded at once."""
    s3_retry_seconds: float = field(default_factory=lambda: float(env("AIRLAUNCH_S3_RETRY_SECONDS", "300")))
    """AIRLAUNCH_S3_RETRY_SECONDS: how long the results and status.json are retried while S3 fails."""

    def log_flush_interval(self, age: float) -> float:
        """Seconds from an upload of the running log, ``age`` s into the task, to the next one.

        A tenth of the task's age, within the two bounds: the live log of a young task lags by
        seconds, that of a long one by at most the longest interval, and an hour-long task makes
        about 260 uploads instead of 1,800 at a fixed 2 s (each is an S3 PUT: billed on AWS, and
        with 200 tasks running, 100 requests a second that LocalStack's 2 cores could not keep up with).
        """
        return min(self.log_flush_max_seconds, max(self.log_flush_seconds, age / 10))

    def interim_log_uploads(self, seconds: float) -> int:
        """At most how many uploads of the running log a task of ``seconds`` makes."""
        count, age = 0, self.log_flush_interval(0)
        while age <= seconds:
            count, age = count + 1, age + self.log_flush_interval(age)
        return count
