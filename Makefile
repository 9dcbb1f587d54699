# airlaunch: Airflow schedules, a Lambda launches containers, results land in S3.
# `make help` lists the targets. Everything is installed into this folder (.venv*, .build,
# .stack); the Docker engine is installed and started when missing.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
LS_VENV := .venv-localstack
PY := $(VENV)/bin/python
STACK := $(PY) -m airlaunch.stack
PYTEST_ARGS ?= tests
SAM_CLI_VERSION := 1.170.0
RIE_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)
DOCKER_BUILD := docker build --network host -q

.PHONY: help install engine images localstack-up up down test lint format clean

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(VENV)/.installed $(LS_VENV)/.installed .build/aws-lambda-rie .build/pip-cert.pem ## Install the Python environments and build inputs (no Docker needed)

$(VENV)/.installed: requirements-dev.lock pyproject.toml
	@echo "==> Creating $(VENV) (Airflow 3, boto3, docker SDK, test tools) from requirements-dev.lock"
	@python=$$(scripts/find-python.sh 3.12) && $$python -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip
	@$(VENV)/bin/pip install -q --no-deps -r requirements-dev.lock 2>&1 | grep -v "is ignored" || true
	@$(VENV)/bin/pip install -q --no-deps -e . 2>&1 | grep -v "is ignored" || true
	@$(PY) -c "import airflow, airlaunch, docker, boto3" && touch $@

$(LS_VENV)/.installed: localstack/requirements.lock
	@echo "==> Creating $(LS_VENV) (localstack-core, needs Python 3.13) from localstack/requirements.lock"
	@python=$$(scripts/find-python.sh 3.13) && $$python -m venv $(LS_VENV)
	@$(LS_VENV)/bin/pip install -q --no-deps -r localstack/requirements.lock 2>&1 | grep -v "is ignored" || true
	@$(LS_VENV)/bin/python -c "import localstack.runtime.main" && touch $@

.build/aws-lambda-rie:
	@echo "==> Fetching AWS's Lambda Runtime Interface Emulator (from the aws-sam-cli wheel)"
	@mkdir -p .build/wheels
	@pip download -q --no-deps -d .build/wheels aws-sam-cli==$(SAM_CLI_VERSION) 2>&1 | grep -v "is ignored" || true
	@unzip -p .build/wheels/aws_sam_cli-$(SAM_CLI_VERSION)-*.whl samcli/local/rapid/aws-lambda-rie-$(RIE_ARCH) > $@.tmp
	@chmod +x $@.tmp && mv $@.tmp $@

.build/pip-cert.pem:
	@mkdir -p .build
	@if [ -n "$${PIP_CERT:-}" ] && [ -f "$${PIP_CERT}" ]; then cp "$$PIP_CERT" $@; else : > $@; fi

engine: ## Make sure a Docker engine answers (installs and starts one when missing)
	@scripts/docker-engine.sh ensure

images: engine .build/aws-lambda-rie .build/pip-cert.pem ## Build the task images and the launcher Lambda image
	@base=$$(scripts/base-image.sh) && \
	  echo "==> Building airlaunch/task-runtime, airlaunch/reference-tasks, airlaunch/launcher (base $$base)" && \
	  $(DOCKER_BUILD) --build-arg BASE_IMAGE=$$base -f tasks/runtime/Dockerfile -t airlaunch/task-runtime . >/dev/null && \
	  $(DOCKER_BUILD) -f tasks/reference/Dockerfile -t airlaunch/reference-tasks . >/dev/null && \
	  $(DOCKER_BUILD) --build-arg BASE_IMAGE=$$base -f lambda/Dockerfile -t airlaunch/launcher . >/dev/null

localstack-up: $(VENV)/.installed $(LS_VENV)/.installed ## Start LocalStack on 127.0.0.1:4566 with the results bucket
	@$(STACK) localstack-up

up: install images ## Start LocalStack and the launcher Lambda (127.0.0.1:9000)
	@$(STACK) up

down: ## Stop everything `up` or `demo` started (and a Docker engine they started)
	@if [ -x $(PY) ]; then $(STACK) down; fi
	@scripts/docker-engine.sh stop

test: install ## Lint, then run every test on the real stack; starts and afterwards stops what it needs
	@$(MAKE) --no-print-directory lint
	@had_engine=$$([ -f .stack/dockerd.pid ] && echo yes); \
	  trap '[ -n "$$had_engine" ] || scripts/docker-engine.sh stop' EXIT; \
	  $(MAKE) --no-print-directory images && \
	  $(PY) -m pytest -p no:cacheprovider -rfE $(PYTEST_ARGS)

lint: $(VENV)/.installed ## ruff (lint and format check) and mypy
	@echo "==> ruff and mypy"
	@$(VENV)/bin/ruff check src tests airflow bench
	@$(VENV)/bin/ruff format --check src tests airflow bench
	@$(VENV)/bin/mypy

format: $(VENV)/.installed ## Apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --fix src tests airflow bench
	@$(VENV)/bin/ruff format src tests airflow bench

clean: down ## Remove the environments, build inputs and local state
	rm -rf $(VENV) $(LS_VENV) .build .stack

# -- AWS deployment (docs/deploy-aws.md) -----------------------------------------------------
DEPLOY_STACK ?= airlaunch
DEPLOY_PARAMS ?=
DEPLOY_ARGS = --stack-name $(DEPLOY_STACK) $(foreach p,$(DEPLOY_PARAMS),--param '$(p)')

.PHONY: deploy deploy-localstack

deploy: $(VENV)/.installed ## Deploy infra/template.yaml to AWS via a change set (DEPLOY_PARAMS="K=V ...", AUTO_APPROVE=1)
	@$(PY) -m airlaunch.deploy $(DEPLOY_ARGS)

deploy-localstack: localstack-up ## Deploy the same template into LocalStack (without ECS/ECR, which it lacks)
	@AUTO_APPROVE=1 $(PY) -m airlaunch.deploy --localstack $(DEPLOY_ARGS)
