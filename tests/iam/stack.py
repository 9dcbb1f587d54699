"""The deployed stack as IAM sees it: the rendered template's policies with real names filled in.

The template's intrinsic functions (Ref, Fn::Sub, Fn::GetAtt, Fn::Join, Fn::If, Fn::Select) are
resolved against the physical ids of a stack deployed into moto, so the policies judged are
the template's own text, including what moto drops (the bucket policy, ManagedPolicyArns).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.iam.evaluator import Principal


@dataclass
class Deployed:
    template: dict[str, Any]
    stack: str
    account: str
    region: str
    physical: dict[str, str]  # logical id -> physical id (moto's list_stack_resources)
    parameters: dict[str, str] = field(default_factory=dict)
    secret_arns: dict[str, str] = field(default_factory=dict)  # a secret's name -> its full ARN (Secrets Manager's)
    secret_keys: dict[str, str] = field(default_factory=dict)  # a secret's or parameter's ARN -> its KMS key (id/ARN)

    # -- intrinsic functions -------------------------------------------------------------------
    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.template["Parameters"]:
            value = self.parameters.get(name, self.template["Parameters"][name].get("Default", ""))
            kind = self.template["Parameters"][name]["Type"]
            return value.split(",") if kind == "CommaDelimitedList" else value
        return self.physical[name]

    def attr(self, name: str, attribute: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        physical = self.physical[name]
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{self.account}:role/{physical}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{physical}"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{self.region}:{self.account}:{physical.rsplit('/', 1)[1]}"
        if kind == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{self.region}:{self.account}:log-group:{physical}:*"
        raise KeyError(f"no ARN rule for {name}.{attribute} ({kind})")

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not None]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                return self.attr(*value)
            if key == "Fn::Sub":
                return self._sub(value)
            if key == "Fn::Join":
                return value[0].join(self.resolve(value[1]))
            if key == "Fn::Select":
                return self.resolve(value[1])[int(value[0])]
            if key == "Fn::If":
                return self.resolve(value[1] if self.condition(value[0]) else value[2])
            if key == "Fn::Equals":
                return self.resolve(value[0]) == self.resolve(value[1])
            if key == "Fn::Not":
                return not self.resolve(value[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in value)
            if key == "Condition":
                return self.condition(value)
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not None}

    def _sub(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if "." in name and not name.startswith("AWS::"):
                return self.attr(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    # -- what IAM sees -------------------------------------------------------------------------
    def role_arn(self, logical: str) -> str:
        return self.attr(logical, "Arn")

    def role_policies(self, logical: str) -> tuple[dict[str, Any], ...]:
        props = self.template["Resources"][logical]["Properties"]
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        for arn in props.get("ManagedPolicyArns", []):
            documents.append(self.template["Resources"][arn["Ref"]]["Properties"]["PolicyDocument"])
        return tuple(self.resolve(d) for d in documents)

    def trust_policy(self, role_arn: str) -> dict[str, Any]:
        logical = self.logical_of_role(role_arn)
        return dict(self.resolve(self.template["Resources"][logical]["Properties"]["AssumeRolePolicyDocument"]))

    def logical_of_role(self, role_arn: str) -> str:
        name = role_arn.rsplit("/", 1)[1]
        [logical] = [k for k, v in self.physical.items() if v == name]
        return logical

    def principal(self, logical: str, **session: Any) -> Principal:
        return Principal(self.role_arn(logical), self.role_policies(logical), **session)

    def bucket_policy(self) -> dict[str, Any]:
        return dict(self.resolve(self.template["Resources"]["ResultsBucketPolicy"]["Properties"]["PolicyDocument"]))

    def task_definition_roles(self, family: str) -> list[str]:
        """The roles RunTask passes for a family: its execution role and its task role."""
        for resource in self.template["Resources"].values():
            if (
                resource["Type"] == "AWS::ECS::TaskDefinition"
                and self.resolve(resource["Properties"]["Family"]) == family
            ):
                props = resource["Properties"]
                return [self.resolve(props["ExecutionRoleArn"]), self.resolve(props["TaskRoleArn"])]
        raise KeyError(f"no task definition of family {family}")
