"""The entrypoint of every task image: fetch params, run the task, publish its results.

``airlaunch-run -- CMD...`` runs a command; ``airlaunch-run --notebook PATH`` runs a
notebook with papermill, its parameters injected. The task's output is streamed to stdout
(so ``docker logs`` and CloudWatch see it), archived as log.txt and uploaded every few
seconds while it runs. status.json is written last, once, in every outcome: success,
non-zero exit, timeout, SIGTERM (stop) or a failure of the runtime itself. The values of the
task's secrets (``AIRLAUNCH_SECRET_NAMES``) are masked in everything it keeps: its stdout, the
log's parts and log.txt, status.json's log tail and error, result.json and the output notebook.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

from airlaunch.aws_errors import error_code, is_missing
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
    StopRequest,
    TaskState,
    mask,
    mask_json,
    secret_values,
    utcnow,
)
from airlaunch.runtime import resources

EXIT_STOPPED = 143  # 128 + SIGTERM, as a shell reports it
EXIT_TIMEOUT = 124  # as coreutils' timeout reports it
EXIT_RUNTIME_ERROR = 70  # EX_SOFTWARE


class LogArchive:
    """Tees the task's output to stdout and a file, keeps the last lines, uploads it while it grows.

    At each flush (``flush_interval(age)`` apart) what is new goes up as the next numbered part (``log/000000``,
    ``log/000001``...; at most ``part_bytes`` each, cut after a newline where there is one), so
    each byte is uploaded once while the task runs, however long the log gets. A part whose
    upload fails is tried again at the next flush: nothing is skipped. log.txt, the whole log,
    is uploaded once at the end. Every line is masked (``secrets``) before it goes anywhere.
    """

    def __init__(
        self,
        path: Path,
        tail_lines: int,
        upload_part: Any,
        flush_interval: Callable[[float], float],
        part_bytes: int = 1 << 20,
        secrets: Sequence[str] = (),
    ) -> None:
        self.path = path
        self.secrets = secrets
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._file = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._upload_part = upload_part
        self._flush_interval = flush_interval
        self._part_bytes = part_bytes
        self.parts = 0
        self.uploaded = 0  # bytes of the file already uploaded as parts
        self._done = threading.Event()
        self._uploader = threading.Thread(target=self._upload_loop, daemon=True)
        self._uploader.start()

    def write(self, line: str) -> None:
        if self.secrets:
            line = mask(line, self.secrets)
        sys.stdout.write(line)
        sys.stdout.flush()
        with self._lock:
            if not self._file.closed:
                self._file.write(line)
                self._file.flush()
            self.tail.append(line.rstrip("\n"))

    def pump(self, stream: IO[str]) -> threading.Thread:
        def run() -> None:
            for line in stream:
                self.write(line)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def _upload_loop(self) -> None:
        started = time.monotonic()
        while not self._done.wait(self._flush_interval(time.monotonic() - started)):
            self.flush()

    def flush(self) -> None:
        """Upload what was written before this flush began, part by part.

        Only up to the size the log had at the start: what the task prints during a slow upload
        waits for the next flush, or a busy S3 would make each flush run on, a PUT after another."""
        with self._flush_lock, self.path.open("rb") as source:
            end = os.fstat(source.fileno()).st_size
            while self.uploaded < end:
                source.seek(self.uploaded)
                data = source.read(min(self._part_bytes, end - self.uploaded))
                cut = data.rfind(b"\n") + 1
                if 0 < cut < len(data):
                    data = data[:cut]
                try:
                    self._upload_part(self.parts, data)
                except Exception as exc:  # a failed interim upload must not kill the task: retried next time
                    sys.stderr.write(f"airlaunch: log upload failed, will retry: {exc}\n")
                    return
                self.parts += 1
                self.uploaded += len(data)

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
        self.secrets = secret_values(environ)  # masked in all it keeps of the task's output
        self.work = Path(settings.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        # Here, not at import: SIGTERM must be handled from the runtime's first moment.
        from botocore.config import Config

        from airlaunch.runtime.credentials import run_session

        # standard retries (throttling, 5xx, connection errors) on every call; the final writes
        # are retried on top of that for up to s3_retry_seconds (``_persist``)
        retries = Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=60)
        self.s3 = run_session(environ).client("s3", config=retries)
        self.stop_detail = ""
        self.proc: subprocess.Popen[str] | None = None
        self.stop_requested = stop_requested or threading.Event()
        self.clock = resources.PhaseClock()

    # -- S3 ---------------------------------------------------------------------------------
    def _put_file(self, path: Path, key: str, content_type: str) -> None:
        self.s3.put_object(Bucket=self.layout.bucket, Key=key, Body=path.read_bytes(), ContentType=content_type)

    def _mask_file(self, path: Path) -> None:
        """A JSON file the task left (result.json, output.ipynb) with every string in it masked."""
        if self.secrets:
            masked = mask_json(json.loads(path.read_text()), self.secrets)
            path.write_text(json.dumps(masked, ensure_ascii=False, indent=1))

    def _upload_log(self, path: Path) -> None:
        self._put_file(path, self.layout.log_key, "text/plain; charset=utf-8")

    def _upload_log_part(self, number: int, data: bytes) -> None:
        self.s3.put_object(
            Bucket=self.layout.bucket, Key=self.layout.log_part_key(number), Body=data,
            ContentType="text/plain; charset=utf-8",
        )  # fmt: skip

    def _persist(self, what: str, action: Any) -> None:
        """Run an S3 write until it succeeds, backing off, for up to s3_retry_seconds: a result or a
        status.json lost to a passing S3 outage would cost a rerun."""
        deadline = time.monotonic() + self.settings.s3_retry_seconds
        pause = 0.5
        while True:
            try:
                action()
                return
            except Exception as exc:
                if time.monotonic() + pause > deadline:
                    raise
                sys.stderr.write(f"airlaunch: writing {what} failed ({exc}); retrying in {pause:.1f} s\n")
                time.sleep(pause)
                pause = min(pause * 2, 10.0)

    def _stop_reason(self) -> StopReason:
        """Who sent the SIGTERM: airlaunch leaves stop.json (with why) before it stops a container."""
        try:
            stop = self._read_stop()
        except Exception as exc:
            self.stop_detail = f"a SIGTERM came, and stop.json could not be read ({exc})"
            return StopReason.STOPPED
        if stop is None:
            self.stop_detail = ""
            return StopReason.PLATFORM  # no stop.json: not a stop airlaunch asked for
        self.stop_detail = stop.reason
        return StopReason.STOPPED

    def _read_stop(self) -> StopRequest | None:
        """The try's stop.json, None when there is none. A run session may read its stop.json but not list
        the bucket, so S3 answers it 403 for a missing key where others get 404: both mean none."""
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=self.layout.bucket, Key=self.layout.stop_key)["Body"].read()
        except ClientError as exc:
            if is_missing(exc) or error_code(exc) in ("AccessDenied", "403"):
                return None
            raise
        return StopRequest.from_json(body)

    def _stopped_before_the_start(self) -> bool:
        """A stop that came before the task's command started: a SIGTERM caught, or stop.json left by a
        stop whose SIGTERM came before this runtime could catch one (the kernel drops a signal to a
        container's PID 1 that has no handler yet; Docker and ECS then wait their whole grace and kill).
        The launcher writes stop.json before it signals, so this one read closes that window."""
        if self.stop_requested.is_set():
            return True
        with contextlib.suppress(Exception):  # unreadable: the task starts, and a SIGTERM still stops it
            if self._read_stop() is not None:
                self.stop_requested.set()
        return self.stop_requested.is_set()

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
        self.clock.mark(resources.PARAMS_READ)
        env = {
            **{k: v for k, v in self.environ.items() if k != ENV_RUN_CREDENTIALS},  # never the run session
            ENV_PARAMS_FILE: str(params_file),
            ENV_RESULT_FILE: str(self.work / RESULT_FILE),
            "PYTHONUNBUFFERED": "1",
        }
        if self._stopped_before_the_start():  # do not start it
            return EXIT_STOPPED, self._stop_reason()
        self.proc = subprocess.Popen(
            self.command(params_file),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,  # its own process group, so stop reaches its children too
        )
        self.clock.mark(resources.USER_CODE_STARTED)
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
        self.clock.mark(resources.USER_CODE_ENDED)
        pump.join(timeout=5)
        code = self.proc.returncode
        if reason is StopReason.STOPPED:
            return EXIT_STOPPED, self._stop_reason()
        if reason is StopReason.TIMEOUT:
            return EXIT_TIMEOUT, reason
        if code != 0:  # a signal (the runtime lived on) reads as 128 + signum, as a shell reports it
            return (128 - code if code < 0 else code), self._failure_reason(code)
        return code, reason

    def _failure_reason(self, returncode: int) -> StopReason:
        """Why the task's command failed: the kernel's OOM killer (the container's memory cgroup counted
        an OOM kill: the command, or a process under it such as a notebook's kernel, was killed), another
        signal, or its own exit; says which in ``stop_detail``."""
        measured = resources.current_resources()
        if measured is not None and measured.oom_kills:
            limit = measured.memory_limit_bytes
            at = f" at its {limit // 2**20} MiB memory limit" if limit else ""
            self.stop_detail = f"out of memory: the kernel killed the task{at}"
            return StopReason.OOM
        if returncode > 0:
            return StopReason.EXIT
        try:
            name = f" ({signal.Signals(-returncode).name})"
        except ValueError:
            name = ""
        self.stop_detail = f"the task was killed by signal {-returncode}{name}"
        return StopReason.KILLED

    def publish(self, log: LogArchive) -> dict[str, str]:
        """Upload result and notebook; return the keys of everything the task left."""
        keys = {"params": self.layout.params_key}
        result = self.work / RESULT_FILE
        if result.exists():
            json.loads(result.read_text())  # a malformed result fails the task, not the reader downstream
            self._mask_file(result)
            self._persist("result.json", lambda: self._put_file(result, self.layout.result_key, "application/json"))
            keys["result"] = self.layout.result_key
        notebook = self.work / NOTEBOOK_FILE
        if notebook.exists():
            self._mask_file(notebook)
            self._persist(
                "output.ipynb", lambda: self._put_file(notebook, self.layout.notebook_key, "application/x-ipynb+json")
            )
            keys["notebook"] = self.layout.notebook_key
        log.close()
        self._persist("log.txt", lambda: self._upload_log(log.path))
        keys["log"] = self.layout.log_key
        return keys

    def run(self) -> int:
        started_at = utcnow()
        log = LogArchive(
            self.work / "log.txt",
            self.settings.log_tail_lines,
            self._upload_log_part,
            self.settings.log_flush_interval,
            self.settings.log_part_bytes,
            self.secrets,
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
            error = describe_failure(code, reason, log.tail, self.stop_detail)
        if error is not None and self.secrets:
            error = mask(error, self.secrets)
        status = Status(
            state=TaskState.SUCCEEDED if code == 0 else TaskState.FAILED,
            exit_code=code,
            reason=reason,
            started_at=started_at,
            usage=resources.measure(self.clock),  # before ended_at: results_uploaded_at <= ended_at
            ended_at=utcnow(),
            execution_id=self.execution_id,
            error=error,
            log_tail=list(log.tail),
            result_keys=keys,
            host=where_am_i(),
        )
        body = status.to_json().encode()
        self._persist(
            "status.json",
            lambda: self.s3.put_object(
                Bucket=self.layout.bucket, Key=self.layout.status_key, Body=body, ContentType="application/json"
            ),
        )
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


def describe_failure(code: int, reason: StopReason, tail: collections.deque[str], stop_detail: str = "") -> str:
    if reason is StopReason.STOPPED:
        return f"stopped by airlaunch: {stop_detail or 'a stop was requested'} (SIGTERM)"
    if reason is StopReason.PLATFORM:
        return (
            "stopped by a SIGTERM that airlaunch did not send: the platform ended the container "
            "(Docker engine restart or docker stop, host shutdown, Spot interruption)"
        )
    if reason is StopReason.TIMEOUT:
        return "stopped: timeout reached"
    last = next((line for line in reversed(tail) if line.strip()), "")
    if reason in (StopReason.OOM, StopReason.KILLED) and stop_detail:
        return f"{stop_detail} (exit code {code})" + (f"; its last line: {last.strip()}" if last else "")
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
    environ = dict(os.environ)  # the runtime's own copy, with the run session (ECS) if there is one
    from airlaunch.runtime.credentials import conceal

    conceal(os.environ)  # before the task's command exists: it must never read the run session
    run = TaskRun(args, RuntimeSettings(), environ, stop_requested)
    signal.signal(signal.SIGTERM, run.on_sigterm)
    if stop_requested.is_set():
        run.on_sigterm(signal.SIGTERM, None)
    return run.run()


def cli() -> None:
    """Run, then leave at once: status.json was the try's last word.

    The interpreter's teardown (thousands of modules, boto3's) is CPU a finished container no
    longer needs; among 200 others at a low CPU weight it kept finished containers alive for
    tens of seconds after Airflow had ended their task.
    """
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
