"""The entrypoint of every task image: fetch params, run the task, publish its results.

``airlaunch-run -- CMD...`` runs a command; ``airlaunch-run --notebook PATH`` runs a
notebook with papermill, its parameters injected. The task's output is streamed to stdout
(so ``docker logs`` and CloudWatch see it), archived as log.txt and uploaded every few
seconds while it runs. status.json is written last, once, in every outcome: success,
non-zero exit, timeout, SIGTERM (stop) or a failure of the runtime itself.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import yaml

from airlaunch.config import RuntimeSettings
from airlaunch.protocol import (
    ENV_BUCKET,
    ENV_EXECUTION_ID,
    ENV_PARAMS_FILE,
    ENV_PREFIX,
    ENV_RESULT_FILE,
    ENV_RUN_CREDENTIALS,
    ENV_TIMEOUT_SECONDS,
    NOTEBOOK_FILE,
    RESULT_FILE,
    ResultLayout,
    Status,
    StopReason,
    TaskState,
    utcnow,
)

EXIT_STOPPED = 143  # 128 + SIGTERM, as a shell reports it
EXIT_TIMEOUT = 124  # as coreutils' timeout reports it
EXIT_RUNTIME_ERROR = 70  # EX_SOFTWARE


class LogArchive:
    """Tees the task's output to stdout and a file, keeps the last lines, uploads it while it grows."""

    def __init__(self, path: Path, tail_lines: int, upload: Any, flush_seconds: float) -> None:
        self.path = path
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._file = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._dirty = False
        self._upload = upload
        self._flush_seconds = flush_seconds
        self._done = threading.Event()
        self._uploader = threading.Thread(target=self._upload_loop, daemon=True)
        self._uploader.start()

    def write(self, line: str) -> None:
        sys.stdout.write(line)
        sys.stdout.flush()
        with self._lock:
            if not self._file.closed:
                self._file.write(line)
                self._file.flush()
                self._dirty = True
            self.tail.append(line.rstrip("\n"))

    def pump(self, stream: IO[str]) -> threading.Thread:
        def run() -> None:
            for line in stream:
                self.write(line)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def _upload_loop(self) -> None:
        while not self._done.wait(self._flush_seconds):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            self._dirty = False
        try:
            self._upload(self.path)
        except Exception as exc:  # a failed interim upload must not kill the task
            sys.stderr.write(f"airlaunch: interim log upload failed: {exc}\n")

    def close(self) -> None:
        self._done.set()
        self._uploader.join()
        with self._lock:
            self._file.close()


class TaskRun:
    def __init__(
        self,
        args: argparse.Namespace,
        settings: RuntimeSettings,
        environ: dict[str, str],
        stop_requested: threading.Event | None = None,
    ) -> None:
        self.args = args
        self.settings = settings
        self.environ = environ
        self.layout = ResultLayout(bucket=environ[ENV_BUCKET], prefix=environ[ENV_PREFIX])
        self.execution_id = environ.get(ENV_EXECUTION_ID, self.layout.prefix)
        self.timeout = float(environ.get(ENV_TIMEOUT_SECONDS) or 0) or None
        self.work = Path(settings.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        # Here, not at import: SIGTERM must be handled from the runtime's first moment.
        from airlaunch.runtime.credentials import run_session

        self.s3 = run_session(environ).client("s3")
        self.proc: subprocess.Popen[str] | None = None
        self.stop_requested = stop_requested or threading.Event()

    # -- S3 ---------------------------------------------------------------------------------
    def _put_file(self, path: Path, key: str, content_type: str) -> None:
        self.s3.put_object(Bucket=self.layout.bucket, Key=key, Body=path.read_bytes(), ContentType=content_type)

    def _upload_log(self, path: Path) -> None:
        self._put_file(path, self.layout.log_key, "text/plain; charset=utf-8")

    # -- signals ----------------------------------------------------------------------------
    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested.set()
        self._signal_task(signal.SIGTERM)

    def _signal_task(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    # -- the run ----------------------------------------------------------------------------
    def command(self, params_file: Path) -> list[str]:
        if not self.args.notebook:
            if not self.args.command:
                raise ValueError("no task command given: use `-- CMD...` or `--notebook PATH`")
            return list(self.args.command)
        document = yaml.safe_load(params_file.read_text()) or {}
        notebook_params = {**(document.get("params") or {}), "airlaunch_run": document.get("run") or {}}
        nb_params_file = self.work / "notebook-params.yaml"
        nb_params_file.write_text(yaml.safe_dump(notebook_params))
        output = self.work / NOTEBOOK_FILE
        return [
            sys.executable, "-m", "papermill", self.args.notebook, str(output),
            "-f", str(nb_params_file), "--log-output", "--no-progress-bar", "--request-save-on-cell-execute",
        ]  # fmt: skip

    def execute(self, log: LogArchive) -> tuple[int, StopReason]:
        """Run the task to its end; return its exit code and why it ended."""
        params_file = self.work / "params.yaml"
        self.s3.download_file(self.layout.bucket, self.layout.params_key, str(params_file))
        env = {
            **{k: v for k, v in self.environ.items() if k != ENV_RUN_CREDENTIALS},  # the task's own code uses its role
            ENV_PARAMS_FILE: str(params_file),
            ENV_RESULT_FILE: str(self.work / RESULT_FILE),
            "PYTHONUNBUFFERED": "1",
        }
        if self.stop_requested.is_set():  # stopped before the task started: do not start it
            return EXIT_STOPPED, StopReason.STOPPED
        self.proc = subprocess.Popen(
            self.command(params_file),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,  # its own process group, so stop reaches its children too
        )
        assert self.proc.stdout is not None
        pump = log.pump(self.proc.stdout)
        deadline = time.monotonic() + self.timeout if self.timeout else None
        reason = StopReason.EXIT
        while self.proc.poll() is None:
            if self.stop_requested.is_set():  # also when SIGTERM came before the task had started
                reason = StopReason.STOPPED
                self._signal_task(signal.SIGTERM)
                break
            if deadline and time.monotonic() > deadline:
                reason = StopReason.TIMEOUT
                log.write(f"airlaunch: timeout of {self.timeout:g} s reached, stopping the task\n")
                self._signal_task(signal.SIGTERM)
                break
            time.sleep(0.1)
        if self.stop_requested.is_set():  # the task may have died of the forwarded SIGTERM first
            reason = StopReason.STOPPED
        if reason is not StopReason.EXIT:
            try:
                self.proc.wait(self.settings.kill_grace_seconds)
            except subprocess.TimeoutExpired:
                self._signal_task(signal.SIGKILL)
                self.proc.wait()
        pump.join(timeout=5)
        code = self.proc.returncode
        if reason is StopReason.STOPPED:
            return EXIT_STOPPED, reason
        if reason is StopReason.TIMEOUT:
            return EXIT_TIMEOUT, reason
        return (128 - code if code < 0 else code), reason  # killed by a signal: 128 + signum

    def publish(self, log: LogArchive) -> dict[str, str]:
        """Upload result and notebook; return the keys of everything the task left."""
        keys = {"params": self.layout.params_key}
        result = self.work / RESULT_FILE
        if result.exists():
            json.loads(result.read_text())  # a malformed result fails the task, not the reader downstream
            self._put_file(result, self.layout.result_key, "application/json")
            keys["result"] = self.layout.result_key
        notebook = self.work / NOTEBOOK_FILE
        if notebook.exists():
            self._put_file(notebook, self.layout.notebook_key, "application/x-ipynb+json")
            keys["notebook"] = self.layout.notebook_key
        log.close()
        self._upload_log(log.path)
        keys["log"] = self.layout.log_key
        return keys

    def run(self) -> int:
        started_at = utcnow()
        log = LogArchive(
            self.work / "log.txt", self.settings.log_tail_lines, self._upload_log, self.settings.log_flush_seconds
        )
        error: str | None = None
        try:
            code, reason = self.execute(log)
        except Exception as exc:
            code, reason, error = EXIT_RUNTIME_ERROR, StopReason.ERROR, f"airlaunch runtime: {exc}"
            log.write(f"{error}\n")
        keys: dict[str, str] = {"params": self.layout.params_key}
        try:
            keys = self.publish(log)
        except Exception as exc:
            code, reason = code or EXIT_RUNTIME_ERROR, StopReason.ERROR
            error = f"airlaunch runtime: publishing results failed: {exc}"
            log.write(f"{error}\n")
            log.close()
            with contextlib.suppress(Exception):  # the log says what went wrong: one more try to keep it
                self._upload_log(log.path)
                keys["log"] = self.layout.log_key
        if code != 0 and error is None:
            error = describe_failure(code, reason, log.tail)
        status = Status(
            state=TaskState.SUCCEEDED if code == 0 else TaskState.FAILED,
            exit_code=code,
            reason=reason,
            started_at=started_at,
            ended_at=utcnow(),
            execution_id=self.execution_id,
            error=error,
            log_tail=list(log.tail),
            result_keys=keys,
            host=where_am_i(),
        )
        self.s3.put_object(
            Bucket=self.layout.bucket, Key=self.layout.status_key, Body=status.to_json().encode(),
            ContentType="application/json",
        )  # fmt: skip
        print(f"airlaunch: {status.state.value} with exit code {code}, status at {self.layout.uri('status.json')}")
        return code


def where_am_i() -> str:
    """The short Docker container id (found in our own mounts), else the hostname.

    With ``--network host`` a container has the host's hostname, but Docker still mounts its
    per-container /etc/hostname from /var/lib/docker/containers/<id>/.
    """
    try:
        match = re.search(r"/containers/([0-9a-f]{64})/", Path("/proc/self/mountinfo").read_text())
    except OSError:
        match = None
    return match.group(1)[:12] if match else socket.gethostname()


def describe_failure(code: int, reason: StopReason, tail: collections.deque[str]) -> str:
    if reason is StopReason.STOPPED:
        return "stopped by request (SIGTERM)"
    if reason is StopReason.TIMEOUT:
        return "stopped: timeout reached"
    last = next((line for line in reversed(tail) if line.strip()), "")
    return f"exit code {code}" + (f": {last.strip()}" if last else "")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="airlaunch-run", description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", help="run this notebook with papermill instead of a command")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the task command and its arguments")
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    missing = [name for name in (ENV_BUCKET, ENV_PREFIX) if not os.environ.get(name)]
    if missing:
        print(f"airlaunch-run: {', '.join(missing)} not set; the launcher sets them", file=sys.stderr)
        return 2
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_requested.set())  # before anything slow
    run = TaskRun(args, RuntimeSettings(), dict(os.environ), stop_requested)
    signal.signal(signal.SIGTERM, run.on_sigterm)
    if stop_requested.is_set():
        run.on_sigterm(signal.SIGTERM, None)
    return run.run()


def cli() -> None:
    sys.exit(main(sys.argv[1:]))
