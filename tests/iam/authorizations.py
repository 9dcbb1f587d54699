"""What AWS authorizes for each recorded call: action, resource ARN, condition keys, resource policy.

From the Service Authorization Reference ("Actions, resources, and condition keys for ..."):
a call may need more than its own action (RunTask with tags also needs ecs:TagResource, and
iam:PassRole for every role of the task definition; AssumeRole with tags needs sts:TagSession).
A call this table does not know fails the test: map it here before the code may make it.

AssumeRole needs sts:TagSession whenever the new session gets session tags, and it gets them
not only when the call passes ``Tags``: a session started from a session that carries
transitive tags inherits them ("Permissions required to add session tags" and "Chaining roles
with session tags", IAM User Guide; AssumeRole's API reference: "the new session inherits any
transitive session tags from the calling session"). AWS's pages do not say so in one sentence,
but the field does: role chaining from EKS Pod Identity sessions (transitive tags) or from
configure-aws-credentials' tagged sessions fails with "not authorized to perform:
sts:TagSession" until the next role's trust policy allows it (aws-actions/configure-aws-
credentials#1544, its README since). The request context AWS gives that implicit TagSession is
not documented; the inherited tags are modelled here as passed ones (aws:RequestTag/*,
aws:TagKeys, sts:TransitiveTagKeys), the strictest reading for a policy that conditions them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from tests.iam.evaluator import Request
from tests.iam.recorder import Call
from tests.iam.stack import Deployed

Mapper = Callable[[Call, Deployed], list[Request]]


def _object(action: str) -> Mapper:
    def requests(call: Call, stack: Deployed) -> list[Request]:
        p = call.params
        resource = f"arn:aws:s3:::{p['Bucket']}/{p['Key']}"
        found = [Request(action, resource, {}, stack.bucket_policy(), stack.account)]
        if call.error_code in ("NoSuchKey", "404"):
            # S3 answers 404 for a missing key only to a caller with s3:ListBucket, else 403 (GetObject's
            # documentation); that check has no s3:prefix in its context, so none is given here.
            found.append(
                Request("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", {}, stack.bucket_policy(), stack.account)
            )
        return found

    return requests


def _list_bucket(call: Call, stack: Deployed) -> list[Request]:
    p = call.params
    context = {"s3:prefix": p.get("Prefix", "")}
    if "Delimiter" in p:
        context["s3:delimiter"] = p["Delimiter"]
    return [Request("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", context, stack.bucket_policy(), stack.account)]


def _cluster_arn(stack: Deployed, cluster: str) -> str:
    return cluster if cluster.startswith("arn:") else f"arn:aws:ecs:{stack.region}:{stack.account}:cluster/{cluster}"


def _tag_context(tags: list[dict[str, str]], key: str = "key", value: str = "value") -> dict[str, Any]:
    if not tags:
        return {}
    return {"aws:TagKeys": [t[key] for t in tags], **{f"aws:RequestTag/{t[key]}": t[value] for t in tags}}


def _run_task(call: Call, stack: Deployed) -> list[Request]:
    p = call.params
    # a family ("name", "name:3") or a task definition ARN ("arn:...:task-definition/name:3")
    family = p["taskDefinition"].rsplit("/", 1)[-1].split(":")[0]
    cluster = _cluster_arn(stack, p["cluster"])
    definition = f"arn:aws:ecs:{stack.region}:{stack.account}:task-definition/{family}:1"
    tags = _tag_context(p.get("tags", []))
    requests = [Request("ecs:RunTask", definition, {"ecs:cluster": cluster, **tags})]
    if p.get("tags"):
        cluster_name = cluster.rsplit("/", 1)[1]
        task = f"arn:aws:ecs:{stack.region}:{stack.account}:task/{cluster_name}/0123456789abcdef"
        requests.append(Request("ecs:TagResource", task, {"ecs:CreateAction": "RunTask", **tags}))
    for role in stack.task_definition_roles(family):
        requests.append(Request("iam:PassRole", role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}))
    return requests


def _on_tasks(action: str) -> Mapper:
    def requests(call: Call, stack: Deployed) -> list[Request]:
        p = call.params
        cluster = _cluster_arn(stack, p["cluster"])
        tasks = p.get("tasks") or [p["task"]]
        return [Request(action, t, {"ecs:cluster": cluster}) for t in tasks]

    return requests


def _list_tasks(call: Call, stack: Deployed) -> list[Request]:
    return [Request("ecs:ListTasks", "*", {"ecs:cluster": _cluster_arn(stack, call.params["cluster"])})]


def _assume_role(call: Call, stack: Deployed) -> list[Request]:
    p = call.params
    trust = stack.trust_policy(p["RoleArn"])
    inherited = [{"Key": k, "Value": v} for k, v in call.inherited_tags.items()]
    context = _tag_context([*inherited, *p.get("Tags", [])], "Key", "Value")
    transitive = [*call.inherited_tags, *p.get("TransitiveTagKeys", [])]
    if transitive:
        context["sts:TransitiveTagKeys"] = transitive
    requests = [Request("sts:AssumeRole", p["RoleArn"], context, trust, stack.account)]
    if p.get("Tags") or inherited:  # passed, or inherited through a role chain: either way the session is tagged
        requests.append(Request("sts:TagSession", p["RoleArn"], context, trust, stack.account))
    return requests


def _invoke(call: Call, stack: Deployed) -> list[Request]:
    name = call.params["FunctionName"]
    arn = name if name.startswith("arn:") else f"arn:aws:lambda:{stack.region}:{stack.account}:function:{name}"
    return [Request("lambda:InvokeFunction", arn)]


def _queue(action: str) -> Mapper:
    def requests(call: Call, stack: Deployed) -> list[Request]:
        p = call.params
        name = p["QueueName"] if "QueueName" in p else p["QueueUrl"].rstrip("/").rsplit("/", 1)[1]
        return [Request(action, f"arn:aws:sqs:{stack.region}:{stack.account}:{name}")]

    return requests


def _decrypt(stack: Deployed, resource: str, service: str) -> list[Request]:
    """kms:Decrypt of a secret's customer managed key, which Secrets Manager or SSM calls on the caller's behalf
    (KMS Developer Guide, "kms:ViaService": the service and Region in the request context)."""
    key = stack.secret_keys.get(resource)
    if key is None:
        return []
    key_arn = key if key.startswith("arn:") else f"arn:aws:kms:{stack.region}:{stack.account}:key/{key}"
    return [Request("kms:Decrypt", key_arn, {"kms:ViaService": f"{service}.{stack.region}.amazonaws.com"})]


def _secret(action: str) -> Mapper:
    """DescribeSecret (metadata) and GetSecretValue (the value, decrypted) on a secret's full ARN, whether the
    call names it by name or ARN."""

    def requests(call: Call, stack: Deployed) -> list[Request]:
        secret_id = call.params["SecretId"]
        arn = stack.secret_arns.get(secret_id, secret_id)
        found = [Request(action, arn)]
        return found + (_decrypt(stack, arn, "secretsmanager") if action == "secretsmanager:GetSecretValue" else [])

    return requests


def _parameter_arn(stack: Deployed, name: str) -> str:
    return (
        name if name.startswith("arn:") else f"arn:aws:ssm:{stack.region}:{stack.account}:parameter/{name.lstrip('/')}"
    )


def _parameters(action: str) -> Mapper:
    """GetParameter / GetParameters on each parameter's ARN; decrypted, the key's kms:Decrypt too."""

    def requests(call: Call, stack: Deployed) -> list[Request]:
        p = call.params
        found = []
        for name in p.get("Names") or [p["Name"]]:
            arn = _parameter_arn(stack, name)
            found.append(Request(action, arn))
            found += _decrypt(stack, arn, "ssm") if p.get("WithDecryption") else []
        return found

    return requests


def _copy_object(call: Call, stack: Deployed) -> list[Request]:
    """CopyObject reads its source (s3:GetObject) and writes its destination (s3:PutObject)."""
    p, source = call.params, call.params["CopySource"]
    if isinstance(source, str):  # botocore has made it "bucket/key" (URL-encoded) by the time it is recorded
        source = dict(zip(("Bucket", "Key"), urllib.parse.unquote(source.split("?")[0]).split("/", 1), strict=True))
    policy, account = stack.bucket_policy(), stack.account
    return [
        Request("s3:GetObject", f"arn:aws:s3:::{source['Bucket']}/{source['Key']}", {}, policy, account),
        Request("s3:PutObject", f"arn:aws:s3:::{p['Bucket']}/{p['Key']}", {}, policy, account),
    ]


def _describe_images(call: Call, stack: Deployed) -> list[Request]:
    p = call.params
    registry = p.get("registryId", stack.account)
    return [Request("ecr:DescribeImages", f"arn:aws:ecr:{stack.region}:{registry}:repository/{p['repositoryName']}")]


def _bucket_location(call: Call, stack: Deployed) -> list[Request]:
    bucket = call.params["Bucket"]
    return [Request("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}", {}, stack.bucket_policy(), stack.account)]


MAPPERS: dict[str, Mapper] = {
    "s3.GetObject": _object("s3:GetObject"),
    "s3.GetBucketLocation": _bucket_location,
    "s3.HeadObject": _object("s3:GetObject"),
    "s3.PutObject": _object("s3:PutObject"),
    "s3.DeleteObject": _object("s3:DeleteObject"),
    "s3.CopyObject": _copy_object,
    "s3.ListObjectsV2": _list_bucket,
    "s3.ListObjects": _list_bucket,
    "ecs.RunTask": _run_task,
    "ecs.DescribeTasks": _on_tasks("ecs:DescribeTasks"),
    "ecs.StopTask": _on_tasks("ecs:StopTask"),
    "ecs.ListTasks": _list_tasks,
    "ecs.DescribeTaskDefinition": lambda call, stack: [Request("ecs:DescribeTaskDefinition", "*")],
    "ecr.DescribeImages": _describe_images,
    "sts.AssumeRole": _assume_role,
    "lambda.Invoke": _invoke,
    "sqs.ReceiveMessage": _queue("sqs:ReceiveMessage"),
    "sqs.DeleteMessage": _queue("sqs:DeleteMessage"),
    "sqs.DeleteMessageBatch": _queue("sqs:DeleteMessage"),
    "sqs.GetQueueUrl": _queue("sqs:GetQueueUrl"),
    "sqs.ChangeMessageVisibilityBatch": _queue("sqs:ChangeMessageVisibility"),
    "secretsmanager.DescribeSecret": _secret("secretsmanager:DescribeSecret"),
    "secretsmanager.GetSecretValue": _secret("secretsmanager:GetSecretValue"),
    "ssm.GetParameter": _parameters("ssm:GetParameter"),
    "ssm.GetParameters": _parameters("ssm:GetParameters"),
}


def requests_of(call: Call, stack: Deployed) -> list[Request]:
    mapper = MAPPERS.get(str(call))
    if mapper is None:
        raise KeyError(f"{call} has no authorization mapping in tests/iam/authorizations.py: add one")
    return mapper(call, stack)
