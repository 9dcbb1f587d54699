"""``airlaunch secret``: give a catalog secret its value, and see whether the catalog's secrets can be injected.

``airlaunch secret set NAME [--ssm] [--json-key KEY] [--kms-key KEY]`` stores a value in Secrets
Manager (a new secret, or a new current version of an existing one: a rotation, used from the
next launch on) or, with ``--ssm``, as an SSM SecureString parameter. The value is read from
standard input when it is a pipe, else from a prompt that does not echo, asked twice; never
from the command line, which every user of the machine can read (``ps``) and the shell keeps
in its history. Nothing prints the value.

``airlaunch secret check [TASK...] [--catalog PATH]`` tells, for each secret a catalog entry
names, whether it could be injected now, judged by its metadata as the launcher on AWS judges it
(airlaunch.secret_refs.check_readable): what a launch would refuse, before Airflow tries.

Both go where boto3 goes: ``eval "$(python -m airlaunch.stack env)"`` points them at the local
stack's LocalStack, where the local launcher and the ECS mode's Fargate stand-in read secrets.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any, TextIO

from airlaunch.catalog import Catalog, CatalogError
from airlaunch.cli.store import EXIT_OK, EXIT_USAGE, CliError
from airlaunch.secret_refs import SecretRef, SecretUnavailable, check_readable

EXIT_MISSING = 1


def add_secret_commands(sub: Any, common: Any) -> None:
    """``airlaunch secret set|check``; ``common`` adds the flags every command takes."""
    secret = sub.add_parser("secret", help="set a catalog secret's value (from stdin or a prompt), or check them")
    actions = secret.add_subparsers(dest="secret_action", required=True, metavar="ACTION")
    p = actions.add_parser("set", help="store a value: stdin if piped, else a prompt; never an argument")
    common(p)
    p.add_argument("name", metavar="NAME", help="the secret's (or, with --ssm, the parameter's) name")
    p.add_argument("--ssm", action="store_true", help="an SSM SecureString parameter instead of a secret")
    p.add_argument("--json-key", help="set this key of a JSON secret, keeping its other keys")
    p.add_argument("--kms-key", help="the customer managed KMS key to encrypt with (a new secret, or --ssm)")
    p.set_defaults(handler=cmd_secret_set)
    p = actions.add_parser("check", help="whether each catalog secret can be injected now (by its metadata)")
    common(p)
    p.add_argument("tasks", nargs="*", metavar="TASK", help="only these catalog tasks")
    p.add_argument("--catalog", default="tasks/catalog.yaml", help="the task catalog (default: %(default)s)")
    p.set_defaults(handler=cmd_secret_check)


def _clients(args: argparse.Namespace) -> tuple[Any, Any]:
    import boto3

    endpoint = getattr(args, "endpoint_url", None) or None
    session = boto3.session.Session()
    return session.client("secretsmanager", endpoint_url=endpoint), session.client("ssm", endpoint_url=endpoint)


def read_new_value(name: str, stdin: TextIO | None = None) -> str:
    """The value: standard input when it is not a terminal (one trailing newline dropped), else a prompt that
    does not echo, asked twice."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        value = getpass.getpass(f"value of {name}: ")
        if getpass.getpass(f"value of {name} again: ") != value:
            raise CliError("the two values differ; nothing was stored", EXIT_USAGE)
    else:
        value = stdin.read()
        value = value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")
    if not value:
        raise CliError("an empty value; nothing was stored", EXIT_USAGE)
    return value


def _aws_failure(what: str, exc: Exception) -> CliError:
    error = getattr(exc, "response", {}).get("Error", {})
    return CliError(f"{what}: {error.get('Code', type(exc).__name__)}: {error.get('Message', exc)}", 1)


def cmd_secret_set(store: Any, args: argparse.Namespace, out: TextIO) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    if args.ssm and args.json_key:
        raise CliError("--json-key picks a key of a Secrets Manager secret, not of a parameter", EXIT_USAGE)
    value = read_new_value(args.name)
    secretsmanager, ssm = _clients(args)
    try:
        if args.ssm:
            asked = {"Name": args.name, "Value": value, "Type": "SecureString", "Overwrite": True}
            version = ssm.put_parameter(**asked, **({"KeyId": args.kms_key} if args.kms_key else {}))["Version"]
            out.write(f"stored SSM parameter {args.name!r} (SecureString, version {version})\n")
            return EXIT_OK
        return _set_secret(secretsmanager, args, value, out)
    except (ClientError, BotoCoreError) as exc:
        raise _aws_failure(f"storing {args.name!r} failed", exc) from None


def _set_secret(secretsmanager: Any, args: argparse.Namespace, value: str, out: TextIO) -> int:
    from botocore.exceptions import ClientError

    try:
        current: str | None = secretsmanager.get_secret_value(SecretId=args.name).get("SecretString")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        current = None
    text = value
    if args.json_key:
        document = json.loads(current) if current else {}
        if not isinstance(document, dict):
            raise CliError(f"secret {args.name!r} is not a JSON object: it has no keys to set", EXIT_USAGE)
        text = json.dumps({**document, args.json_key: value})
    if current is None:
        extra = {"KmsKeyId": args.kms_key} if args.kms_key else {}
        answer = secretsmanager.create_secret(Name=args.name, SecretString=text, **extra)
        out.write(f"created Secrets Manager secret {args.name!r} ({answer['ARN']})\n")
    else:
        answer = secretsmanager.put_secret_value(SecretId=args.name, SecretString=text)
        out.write(f"stored a new current version of {args.name!r}: launches from now on get it\n")
    return EXIT_OK


def cmd_secret_check(store: Any, args: argparse.Namespace, out: TextIO) -> int:
    try:
        catalog = Catalog.load(args.catalog)
    except CatalogError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    wanted = args.tasks or sorted(catalog.tasks)
    unknown = sorted(set(wanted) - set(catalog.tasks))
    if unknown:
        raise CliError(f"not in {args.catalog}: {', '.join(unknown)}", EXIT_USAGE)
    secretsmanager, ssm = _clients(args)
    rows: list[tuple[str, SecretRef, str]] = []
    for task in wanted:
        for _, ref in sorted(catalog.tasks[task].secrets.items()):
            try:
                check_readable(ref, secretsmanager, ssm)
                rows.append((task, ref, "ok"))
            except SecretUnavailable as exc:
                rows.append((task, ref, str(exc).split(") ", 1)[-1]))
    if args.json:
        out.write(json.dumps([{"task": t, "variable": r.env, "reference": r.describe(), "state": s}
                              for t, r, s in rows], indent=1) + "\n")  # fmt: skip
    elif not rows:
        out.write("no catalog task names a secret\n")
    for task, ref, state in [] if args.json else rows:
        out.write(f"{task}  {ref.env}  {ref.describe()}  {state}\n")
    return EXIT_OK if all(state == "ok" for _, _, state in rows) else EXIT_MISSING
