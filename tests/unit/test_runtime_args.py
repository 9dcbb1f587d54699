"""``airlaunch-run``'s arguments: the launcher's two forms are read without argparse, as argparse reads them."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from airlaunch.runtime.entrypoint import RunArgs, parse_args


def _argparse(argv: list[str]) -> RunArgs:
    parser = argparse.ArgumentParser(prog="airlaunch-run")
    parser.add_argument("--notebook")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    return RunArgs(args.notebook, args.command[1:] if args.command[:1] == ["--"] else args.command)


@pytest.mark.parametrize(
    "argv",
    [
        ["--", "true"],
        ["--", "python", "-m", "task", "--notebook", "x", "--"],
        ["--"],
        ["--notebook", "/opt/tasks/report.ipynb"],
        ["--notebook", "/opt/tasks/report.ipynb", "--", "ignored"],
        ["python", "task.py"],
    ],
)
def test_each_form_reads_as_argparse_reads_it(argv: list[str]) -> None:
    assert parse_args(argv) == _argparse(argv)


def test_the_launchers_forms_do_not_import_argparse() -> None:
    code = (
        "import sys; from airlaunch.runtime.entrypoint import parse_args; "
        "parse_args(['--', 'true']); parse_args(['--notebook', 'n.ipynb']); print('argparse' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "False"
