"""Deploying airlaunch to AWS (``make deploy``, ``make destroy``, ``make smoke``) and into LocalStack.

cli: the commands; template: infra/template.yaml plus the catalog's tasks; images: build for
the right platform, push to ECR, check the manifest; account: the ECS service-linked role and
the tasks' network; cloudformation: change sets and stack state; smoke: the end-to-end check.
"""

from airlaunch.deploy.cloudformation import deploy, preview
from airlaunch.deploy.errors import DeployError

__all__ = ["DeployError", "deploy", "preview"]
