"""The entrypoint of every task image: fetch params, run the task, publish its results.

``airlaunch-run -- CMD...`` runs a command; ``airlaunch-run --notebook PATH`` runs a notebook
with papermill, its parameters injected. The task's output is streamed to stdout (so
``docker logs`` and CloudWatch see it), archived as log.txt and uploaded every few seconds while
it runs (``log_archive``); the command is supervised (``supervise``: stop, timeout, how it ended);
status.json is written last, once, in every outcome (``outcome``), through the try's files in S3
(``run_files``). The values of the task's secrets (``AIRLAUNCH_SECRET_NAMES``) are masked in
everything it keeps.

SIGTERM is handled from the runtime's first moment: this module imports only the standard library,
the protocol and the runtime's settings; botocore, boto3 and yaml are imported after the handler is
set (tests/unit/test_runtime_imports.py checks it).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

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
    StopReason,
    secret_values,
    utcnow,
)
from airlaunch.runtime.settings import RuntimeSettings


@dataclass(frozen=True)
class RunArgs:
    """What ``airlaunch-run`` was asked to run: a notebook (``--notebook PATH``), else the command."""

    notebook: str | None
    command: list[str]


class TaskRun:
    """One try, start to end: its params fetched, its command supervised, its outcome reported (``run``)."""

    def __init__(
        self,
        args: RunArgs,
        settings: RuntimeSettings,
        environ: dict[str, str],
        stop_requested: threading.Event | None = None,
    ) -> None:
        # Here, not at import: SIGTERM must be handled from the runtime's first moment.
        from airlaunch.runtime import resources
        from airlaunch.runtime.run_files import RunFiles
        from airlaunch.runtime.supervise import Supervisor

        self.args = args
        self.settings = settings
        self.environ = environ
        self.layout = ResultLayout(bucket=environ[ENV_BUCKET], prefix=environ[ENV_PREFIX])
        self.execution_id = environ.get(ENV_EXECUTION_ID, self.layout.prefix)
        self.secrets = secret_values(environ)  # masked in all it keeps of the task's output
        self.work = Path(settings.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.files = RunFiles(environ, self.layout, settings.s3_retry_seconds)
        self.s3 = self.files.s3
        self.clock = resources.PhaseClock()
        timeout = float(environ.get(ENV_TIMEOUT_SECONDS) or 0) or None
        self.supervisor = Supervisor(
            self.files.read_stop, self.clock, settings.kill_grace_seconds, timeout, stop_requested
        )

    def on_sigterm(self, signum: int, frame: object) -> None:
        self.supervisor.on_sigterm(signum, frame)

    def command(self, params_file: Path) -> list[str]:
        if not self.args.notebook:
            if not self.args.command:
                raise ValueError("no task command given: use `-- CMD...` or `--notebook PATH`")
            return list(self.args.command)
        import yaml

        document = yaml.safe_load(params_file.read_text()) or {}
        notebook_params = {**(document.get("params") or {}), "airlaunch_run": document.get("run") or {}}
        nb_params_file = self.work / "notebook-params.yaml"
        nb_params_file.write_text(yaml.safe_dump(notebook_params))
        output = self.work / NOTEBOOK_FILE
        return [
            sys.executable, "-m", "papermill", self.args.notebook, str(output),
            "-f", str(nb_params_file), "--log-output", "--no-progress-bar", "--request-save-on-cell-execute",
        ]  # fmt: skip

    def run(self) -> int:
        """Run the try to its end and report it; the exit code to leave with."""
        from airlaunch.runtime import outcome, resources
        from airlaunch.runtime.log_archive import LogArchive
        from airlaunch.runtime.supervise import EXIT_RUNTIME_ERROR, Exit

        started_at = utcnow()
        log = LogArchive(
            self.work / "log.txt",
            self.settings.log_tail_lines,
            self.files.put_log_part,
            self.settings.log_flush_interval,
            self.settings.log_part_bytes,
            self.secrets,
        )
        error: str | None = None
        try:
            params_file = self.work / "params.yaml"
            self.files.fetch_params(params_file)
            self.clock.mark(resources.PARAMS_READ)
            ended = self.supervisor.stopped_before_the_start() or self.supervisor.run(
                self.command(params_file), self._task_env(params_file), log
            )
        except Exception as exc:
            ended, error = Exit(EXIT_RUNTIME_ERROR, StopReason.ERROR), f"airlaunch runtime: {exc}"
            log.write(f"{error}\n")
        return outcome.report(
            self.files, self.work, log, ended,
            error=error, started_at=started_at, clock=self.clock, execution_id=self.execution_id, secrets=self.secrets,
        )  # fmt: skip

    def _task_env(self, params_file: Path) -> dict[str, str]:
        """The command's environment: the runtime's, never the run session, and where its params and result are."""
        return {
            **{k: v for k, v in self.environ.items() if k != ENV_RUN_CREDENTIALS},
            ENV_PARAMS_FILE: str(params_file),
            ENV_RESULT_FILE: str(self.work / RESULT_FILE),
            "PYTHONUNBUFFERED": "1",
        }


def parse_args(argv: list[str]) -> RunArgs:
    """The arguments; the two forms the launcher starts a container with (``-- CMD...``, ``--notebook PATH``)
    read as argparse reads them, without importing it (each container start would pay for its import)."""
    if argv[:1] == ["--"]:
        return RunArgs(None, argv[1:])
    if len(argv) == 2 and argv[0] == "--notebook" and not argv[1].startswith("-"):
        return RunArgs(argv[1], [])
    import argparse

    parser = argparse.ArgumentParser(prog="airlaunch-run", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--notebook", help="run this notebook with papermill instead of a command")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the task command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return RunArgs(args.notebook, command)


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

    The interpreter's teardown (thousands of modules, botocore's) is CPU a finished container no
    longer needs; among 200 others at a low CPU weight it would keep a finished container alive
    for tens of seconds after Airflow has ended its task.
    """
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
