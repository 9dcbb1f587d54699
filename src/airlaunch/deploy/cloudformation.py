"""Deploy the rendered template with a CloudFormation change set, and delete a stack.

The stack's state is read first: a stack being changed (``*_IN_PROGRESS``) is left alone, a
failed first create (ROLLBACK_COMPLETE) must be deleted before a new create, a failed
rollback needs AWS's own repair. The change set is created, its preview printed, and it is
executed only after a "y" on the terminal or with AUTO_APPROVE=1. On an update, parameters
not given keep their previous values. A failure names each failed resource and AWS's reason.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from airlaunch.deploy.errors import DeployError, failed


def stack_of(cfn: Any, name: str) -> dict[str, Any] | None:
    try:
        stacks: list[dict[str, Any]] = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise failed(f"reading stack {name}", exc) from exc
    except BotoCoreError as exc:
        raise failed(f"reading stack {name}", exc) from exc
    return stacks[0] if stacks else None


def change_kind(stack_name: str, status: str) -> str:
    """CREATE or UPDATE for a stack in ``status`` ("" when absent); DeployError when neither is possible now."""
    if status in ("", "REVIEW_IN_PROGRESS"):
        return "CREATE"
    if status.endswith("_IN_PROGRESS"):
        raise DeployError(
            f"stack {stack_name} is {status}: another deployment or deletion is running. Wait until it ends "
            f"(aws cloudformation describe-stacks --stack-name {stack_name}) and run the command again"
        )
    if status == "ROLLBACK_COMPLETE":
        raise DeployError(
            f"stack {stack_name} is ROLLBACK_COMPLETE: its first create failed (the reasons are in its events) and "
            f"CloudFormation cannot update it. Delete it with `make destroy DEPLOY_STACK={stack_name}` (it holds no "
            "results: the bucket is not kept after a failed create), fix the cause, and deploy again"
        )
    if status == "UPDATE_ROLLBACK_FAILED":
        raise DeployError(
            f"stack {stack_name} is UPDATE_ROLLBACK_FAILED: finish the rollback first "
            f"(aws cloudformation continue-update-rollback --stack-name {stack_name}), then deploy again"
        )
    if status in ("ROLLBACK_FAILED", "DELETE_FAILED"):
        raise DeployError(
            f"stack {stack_name} is {status} and cannot be updated: delete it "
            f"(`make destroy DEPLOY_STACK={stack_name}`; the events say which resource resisted) and deploy again"
        )
    return "UPDATE"


def preview(changes: list[dict[str, Any]]) -> str:
    """The change set as a table: action, logical id, type, replacement."""
    rows = [("ACTION", "RESOURCE", "TYPE", "REPLACEMENT")]
    for change in changes:
        rc = change.get("ResourceChange", {})
        rows.append(
            (
                rc.get("Action", ""),
                rc.get("LogicalResourceId", ""),
                rc.get("ResourceType", ""),
                rc.get("Replacement", "-"),
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def deploy(
    cfn: Any,
    stack_name: str,
    parameters: dict[str, str],
    approve: Callable[[str], bool],
    template_body: str | None = None,
    poll_seconds: int = 5,
) -> dict[str, str]:
    """Create a change set, show it, execute it once approved; returns the stack's outputs.

    ``template_body`` defaults to the template rendered from tasks/catalog.yaml.
    """
    if template_body is None:
        from airlaunch.catalog import Catalog
        from airlaunch.deploy.template import REPO, body, render

        template_body = body(render(Catalog.load(REPO / "tasks" / "catalog.yaml")))
    stack = stack_of(cfn, stack_name)
    kind = change_kind(stack_name, stack["StackStatus"] if stack else "")
    try:
        cfn.validate_template(TemplateBody=template_body)
    except ClientError as exc:
        raise failed("CloudFormation's check of the rendered template", exc) from exc
    declared = set(json.loads(template_body).get("Parameters", {}))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise DeployError(f"unknown template parameter(s) {unknown}; the template declares {sorted(declared)}")
    params: list[dict[str, Any]] = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    if kind == "UPDATE" and stack:
        previous = {p["ParameterKey"] for p in stack.get("Parameters", [])}
        params += [{"ParameterKey": k, "UsePreviousValue": True} for k in sorted(previous & declared - set(parameters))]
    change_set = f"airlaunch-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"==> Creating change set {change_set} ({kind}) for stack {stack_name}", flush=True)
    try:
        cfn.create_change_set(
            StackName=stack_name,
            ChangeSetName=change_set,
            ChangeSetType=kind,
            TemplateBody=template_body,
            Parameters=params,
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
    except ClientError as exc:
        if "No updates are to be performed" in str(exc):  # some endpoints say so at once, AWS in the change set
            print("==> No changes: the stack is up to date", flush=True)
            return outputs_of(cfn, stack_name)
        _drop_empty_stack(cfn, stack_name, kind)
        raise failed(f"creating change set {change_set} for stack {stack_name}", exc) from exc
    except BotoCoreError as exc:
        raise failed(f"creating change set {change_set} for stack {stack_name}", exc) from exc
    waiter = {"Delay": poll_seconds, "MaxAttempts": 720 // poll_seconds}
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            StackName=stack_name, ChangeSetName=change_set, WaiterConfig=waiter
        )
    except WaiterError as exc:
        described = cfn.describe_change_set(StackName=stack_name, ChangeSetName=change_set)
        reason = described.get("StatusReason", str(exc))
        if "didn't contain changes" in reason or "No updates" in reason:
            print("==> No changes: the stack is up to date", flush=True)
            cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
            return outputs_of(cfn, stack_name)
        _drop_empty_stack(cfn, stack_name, kind)
        raise DeployError(f"change set {change_set} of stack {stack_name} failed: {reason}") from exc
    changes: list[dict[str, Any]] = []
    for page in cfn.get_paginator("describe_change_set").paginate(StackName=stack_name, ChangeSetName=change_set):
        changes += page.get("Changes", [])
    print(preview(changes), flush=True)
    approved = False
    try:
        approved = approve(f"Execute change set {change_set} on stack {stack_name}?")
    finally:
        if not approved:
            cfn.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
            if kind == "CREATE":
                cfn.delete_stack(StackName=stack_name)  # leaves no empty REVIEW_IN_PROGRESS stack behind
    if not approved:
        raise DeployError("not confirmed; nothing was changed (answer y, or set AUTO_APPROVE=1)")
    started = time.monotonic()
    cfn.execute_change_set(StackName=stack_name, ChangeSetName=change_set)
    try:
        cfn.get_waiter(f"stack_{kind.lower()}_complete").wait(StackName=stack_name, WaiterConfig=waiter)
    except WaiterError as exc:
        hint = (
            f"the create was rolled back: fix the first reason, then `make destroy DEPLOY_STACK={stack_name}` "
            "and `make deploy`"
            if kind == "CREATE"
            else "the update was rolled back and the stack is as before: fix the first reason and deploy again"
        )
        raise DeployError(f"stack {stack_name} failed:\n{failures(cfn, stack_name)}\n{hint}") from exc
    print(f"==> Stack {stack_name} {kind.lower()}d in {time.monotonic() - started:.1f} s", flush=True)
    return outputs_of(cfn, stack_name)


def _drop_empty_stack(cfn: Any, stack_name: str, kind: str) -> None:
    """A refused first change set leaves an empty REVIEW_IN_PROGRESS stack: delete it, so the next try creates."""
    stack = stack_of(cfn, stack_name) if kind == "CREATE" else None
    if stack and stack["StackStatus"] == "REVIEW_IN_PROGRESS":
        cfn.delete_stack(StackName=stack_name)


def outputs_of(cfn: Any, stack_name: str) -> dict[str, str]:
    stack = stack_of(cfn, stack_name) or {}
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def failures(cfn: Any, stack_name: str) -> str:
    """Each failed resource of the last operation: logical id, type and AWS's reason, oldest first."""
    events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    failed_events = [e for e in events if e.get("ResourceStatus", "").endswith("FAILED")]
    lines = [
        f"  {e['LogicalResourceId']} ({e.get('ResourceType', '')}): {e.get('ResourceStatusReason', 'no reason given')}"
        for e in reversed(failed_events)
        if e.get("ResourceStatusReason") != "Resource creation cancelled"
    ]
    return "\n".join(lines) or "  (no failed resource reported; see the stack's events)"


def delete(cfn: Any, stack_name: str, poll_seconds: int = 5) -> bool:
    """Delete the stack and wait; False when there was none."""
    stack = stack_of(cfn, stack_name)
    if stack is None:
        return False
    if stack["StackStatus"].endswith("_IN_PROGRESS") and stack["StackStatus"] != "REVIEW_IN_PROGRESS":
        raise DeployError(f"stack {stack_name} is {stack['StackStatus']}: wait until it ends and destroy again")
    cfn.delete_stack(StackName=stack_name)
    try:
        cfn.get_waiter("stack_delete_complete").wait(
            StackName=stack_name, WaiterConfig={"Delay": poll_seconds, "MaxAttempts": 1800 // poll_seconds}
        )
    except WaiterError as exc:
        raise DeployError(f"deleting stack {stack_name} failed:\n{failures(cfn, stack_name)}") from exc
    return True


def terminal_approval(question: str) -> bool:
    if os.environ.get("AUTO_APPROVE") == "1":
        return True
    if not sys.stdin.isatty():
        raise DeployError("no terminal to confirm on: set AUTO_APPROVE=1 to go ahead")
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False
