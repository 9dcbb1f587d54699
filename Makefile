# airlaunch: Airflow schedules, a Lambda launches containers, results land in S3.
# `make help` lists the targets. Everything is installed into this folder (.venv*, .build,
# .stack); the Docker engine, the compose tool and debootstrap are installed when missing.
# `make demo` and `make test` do their set-up steps in parallel (SETUP_JOBS).

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
LINT_PATHS := $(wildcard src tests airflow bench tasks localstack/plugin)
LS_VENV := .venv-localstack
PY := $(VENV)/bin/python
STACK := $(PY) -m airlaunch.stack
PYTEST_ARGS ?= tests
# The launcher's backend on the embedded stack: docker, or ecs (the ECS mode: ECS/Fargate emulated, docs/ecs-mode.md)
BACKEND ?= docker
SAM_CLI_VERSION := 1.170.0
RIE_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)
DOCKER_BUILD := docker build --network host -q 2> >(grep -v -e DEPRECATED -e "the buildx component" -e "docs.docker.com/go/buildx" -e "^ *$$" >&2)
SETUP_JOBS ?= 6
SRC := $(shell find src/airlaunch -name '*.py' -not -path '*/__pycache__/*')
LS_PLUGIN := localstack/plugin/pyproject.toml $(wildcard localstack/plugin/airlaunch_localstack/*.py)

.PHONY: help setup system-packages install registry engine compose-tool images localstack-up stack-up demo reload trigger results \
  logs down reset test test-fast lint format clean

help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Install everything and build the images, steps in parallel (what demo and test start with)
	@$(MAKE) --no-print-directory -j$(SETUP_JOBS) install images $(SETUP_EXTRA)

# The Debian packages a fresh machine lacks, in one apt-get call before any step needs one (one
# call instead of one each saves a minute: apt runs one at a time). As root on Debian/Ubuntu only;
# elsewhere each step says what it misses. SETUP_PACKAGES adds more (make test: compose, registry).
SYSTEM_PACKAGES = $(if $(shell command -v dockerd),,docker.io) \
  $(if $(wildcard .build/rootfs-bookworm.tar),,$(if $(shell command -v debootstrap),,debootstrap)) $(SETUP_PACKAGES)
system-packages:
	@scripts/system-packages.sh --if-root $(SYSTEM_PACKAGES)

install: $(VENV)/.installed $(LS_VENV)/.installed ## Install the Python environments (no Docker needed)

# uv installs the locked environments (seconds where pip took minutes); the venvs are made by
# Python itself so that they keep pip (make wheel). uv reads UV_INDEX_URL, not pip.conf. At a
# lower CPU priority: on a fresh machine the base image (debootstrap) is what the set-up waits for.
UV_VERSION := 0.13.9
UV := .build/uv/bin/uv
UV_INSTALL = nice -n 10 $(UV) pip install -q --native-tls --no-deps
# Byte-code for everything an environment holds (its site-packages, and the extra folders given): uv installs
# without it, and where PYTHONDONTWRITEBYTECODE=1 is set no process writes it either, so each new Python
# process compiled all it imported: `import airflow.sdk` 3.5 CPU-s instead of 1.6 (docs/benchmarks.md, "Where
# the CPU goes"). compileall skips what is compiled already, so an existing environment is completed too (uv's
# --compile-bytecode compiles only what that call installs). Files that do not compile (Python 2 test data
# some packages ship) are skipped, as pip and uv skip them.
COMPILE_BYTECODE = nice -n 10 $(1) -m compileall -q -q -j 0 \
  $$($(1) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') $(2) || true

$(UV):
	@echo "==> Installing uv $(UV_VERSION) (the Python package installer) into .build/uv"
	@rm -rf .build/uv && python=$$(scripts/find-python.sh 3.12) && $$python -m venv .build/uv
	@.build/uv/bin/pip install -q uv==$(UV_VERSION) 2>&1 | grep -v "is ignored" || true
	@$(UV) --version >/dev/null

$(VENV)/.installed: requirements-dev.lock pyproject.toml | $(UV)
	@echo "==> Creating $(VENV) (Airflow 3, boto3, docker SDK, test tools) from requirements-dev.lock"
	@python=$$(scripts/find-python.sh 3.12) && $$python -m venv $(VENV)
	@$(UV_INSTALL) --python $(VENV)/bin/python -r requirements-dev.lock
	@$(UV_INSTALL) --python $(VENV)/bin/python --no-build-isolation -e .
	@$(call COMPILE_BYTECODE,$(PY),src)
	@$(PY) -c "import airflow, airlaunch, docker, boto3" && touch $@ && echo "==> $(VENV) is ready"

$(LS_VENV)/.installed: localstack/requirements.lock $(LS_PLUGIN) | $(UV)
	@echo "==> Creating $(LS_VENV) (localstack-core, needs Python 3.13) from localstack/requirements.lock"
	@python=$$(scripts/find-python.sh 3.13) && $$python -m venv $(LS_VENV)
	@$(UV_INSTALL) --python $(LS_VENV)/bin/python -r localstack/requirements.lock
	@$(UV_INSTALL) --python $(LS_VENV)/bin/python --no-build-isolation ./localstack/plugin
	@$(call COMPILE_BYTECODE,$(LS_VENV)/bin/python)
	@$(LS_VENV)/bin/python -c "import localstack.runtime.main, airlaunch_localstack.durable_s3" && touch $@ \
	  && echo "==> $(LS_VENV) is ready"

.build/aws-lambda-rie:
	@echo "==> Fetching AWS's Lambda Runtime Interface Emulator (from the aws-sam-cli wheel)"
	@mkdir -p .build && wheels=$$(mktemp -d .build/wheels.XXXXXX) && \
	  { pip download -q --no-deps -d $$wheels aws-sam-cli==$(SAM_CLI_VERSION) 2>&1 | grep -v "is ignored" || true; } && \
	  python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
	    $$wheels/aws_sam_cli-$(SAM_CLI_VERSION)-py3-none-any.whl samcli/local/rapid/aws-lambda-rie-$(RIE_ARCH) > $$wheels/rie \
	  && chmod +x $$wheels/rie && mv $$wheels/rie $@; status=$$?; rm -rf $$wheels; exit $$status

.build/pip-cert.pem:
	@mkdir -p .build
	@if [ -n "$${PIP_CERT:-}" ] && [ -f "$${PIP_CERT}" ]; then cp "$$PIP_CERT" $@; else : > $@; fi

# A Debian root file system for the base images, made only where no container registry answers
# (it needs no Docker engine, so it is made while the engine is being installed).
.build/rootfs-%.tar: | system-packages
	@scripts/base-rootfs.sh $* $@

registry: | system-packages ## Install the container registry (Debian's docker-registry) the AWS image test pushes to
	@command -v docker-registry >/dev/null 2>&1 || scripts/system-packages.sh docker-registry

engine: | system-packages ## Make sure a Docker engine answers (installs and starts one when missing)
	@scripts/docker-engine.sh ensure

compose-tool: | system-packages ## Make sure a compose tool is installed (Debian's docker-compose when missing)
	@scripts/compose-tool.sh ensure

# Each image is rebuilt when what it is made of changes (the stamp holds its image id).
.build/images/task-runtime: .build/pip-cert.pem tasks/runtime/Dockerfile tasks/runtime/requirements.txt $(SRC) \
  | engine .build/rootfs-bookworm.tar
	@mkdir -p .build/images && base=$$(scripts/base-image.sh bookworm) && \
	  echo "==> Building airlaunch/task-runtime (base $$base)" && \
	  $(DOCKER_BUILD) --build-arg BASE_IMAGE=$$base -f tasks/runtime/Dockerfile -t airlaunch/task-runtime . > $@.tmp \
	  && mv $@.tmp $@

.build/images/reference-tasks: .build/images/task-runtime tasks/reference/Dockerfile $(wildcard tasks/reference/*)
	@echo "==> Building airlaunch/reference-tasks"
	@$(DOCKER_BUILD) -f tasks/reference/Dockerfile -t airlaunch/reference-tasks . > $@.tmp && mv $@.tmp $@

.build/images/launcher: .build/aws-lambda-rie .build/pip-cert.pem lambda/Dockerfile lambda/requirements.txt \
  lambda/entrypoint.sh $(SRC) | engine .build/rootfs-bookworm.tar
	@mkdir -p .build/images && base=$$(scripts/base-image.sh bookworm) && \
	  echo "==> Building airlaunch/launcher (base $$base)" && \
	  $(DOCKER_BUILD) --build-arg BASE_IMAGE=$$base -f lambda/Dockerfile -t airlaunch/launcher . > $@.tmp \
	  && mv $@.tmp $@

images: .build/aws-lambda-rie .build/pip-cert.pem | engine .build/rootfs-bookworm.tar ## Build the task images and the launcher Lambda image (only what changed)
	@for image in task-runtime reference-tasks launcher; do \
	  docker image inspect airlaunch/$$image >/dev/null 2>&1 || rm -f .build/images/$$image; done
	@$(MAKE) --no-print-directory .build/images/reference-tasks .build/images/launcher

localstack-up: $(VENV)/.installed $(LS_VENV)/.installed ## Start LocalStack on 127.0.0.1:4566 with the results bucket
	@$(STACK) localstack-up

stack-up: setup ## Start the embedded stack without Airflow: LocalStack and the launcher Lambda (127.0.0.1:9000) [BACKEND=ecs]
	@AIRLAUNCH_STACK_BACKEND=$(BACKEND) $(STACK) up

demo: setup ## Start the embedded stack (with Airflow), run the reference pipeline, print its results [BACKEND=ecs: on ECS, emulated]
	@AIRLAUNCH_STACK_BACKEND=$(BACKEND) $(PY) -m airlaunch.demo

reload: images ## After changing tasks or the launcher: rebuild what changed; the running launcher takes it (Airflow and running tasks go on)
	@$(STACK) reload

trigger: $(VENV)/.installed ## Trigger a DAG on the running embedded Airflow and watch it: make trigger DAG=airlaunch_fan_out [CONF='{"count": 8}']
	@[ -n "$(DAG)" ] || { echo "error: name the DAG: make trigger DAG=airlaunch_reference" >&2; exit 2; }
	@$(PY) -m airlaunch.demo trigger $(DAG) --conf '$(or $(CONF),{})'

results: $(VENV)/.installed ## Show what a run left in S3: make results [DAG=airlaunch_reference] RUN=<run id> (no RUN: list runs)
	@eval "$$($(STACK) env)" && if [ -n "$(RUN)" ]; then $(VENV)/bin/airlaunch tasks $(or $(DAG),airlaunch_reference) '$(RUN)'; \
	  else $(VENV)/bin/airlaunch runs $(if $(DAG),--dag $(DAG)); fi

logs: ## Show the last lines of the embedded stack's logs (supervisor, LocalStack, Lambda, Airflow)
	@for f in .stack/*.log; do echo "==> $$f"; tail -n 15 "$$f"; done 2>/dev/null || echo "no logs: nothing was started"
	@echo "==> launcher Lambda"; docker logs --tail 15 $${AIRLAUNCH_LAUNCHER_CONTAINER:-airlaunch-launcher} 2>&1 || true

down: ## Stop everything the embedded or compose stack started (and a Docker engine they started); results are kept
	@if [ -x $(PY) ]; then $(STACK) down; fi
	@if [ -x $(PY) ] && [ -d .stack-test2 ]; then $(TEST_LANE2_ENV) $(STACK) down; fi
	@if docker info >/dev/null 2>&1 && [ -n "$$(docker ps -aq --filter label=com.docker.compose.project=$(COMPOSE_PROJECT))" ]; then \
	  $(MAKE) --no-print-directory compose-down; fi
	@scripts/docker-engine.sh stop

reset: ## Delete the local results and Airflow's runs together (embedded stack; compose: its volumes), after stopping
	@if [ -x $(PY) ]; then $(STACK) reset; fi
	@if docker info >/dev/null 2>&1 && [ -n "$$(docker volume ls -q --filter label=com.docker.compose.project=$(COMPOSE_PROJECT))" ]; then \
	  $(MAKE) --no-print-directory compose-down COMPOSE_DOWN_ARGS=-v; fi

# make test: the stack's tests in two lanes, each on an embedded stack of its own, and beside them the fast lane
# (every test not marked stack, then lint) followed by the compose stack's tests (marked compose: a compose
# project of their own on free ports). The stack tests mostly wait on containers and on Airflow's loops (with
# one lane the machine was busy a quarter of the time once the fast lane ended), so the lanes share two cores
# well. The first lane runs on the stack of .stack (the one `make stack-up` starts), the second (TEST_LANE2:
# the fault catalogue's cases, the trigger's tests and the two triggerers' test, which kill, restart or add to
# their stack's processes) on .stack-test2, ports of its own; the two lanes take about the same time. The
# background lanes' output: .build/test-stack2.log and .build/test-side.log; each stack test's time in the
# JUnit files .build/test-stack.xml, test-stack2.xml and test-compose.xml.
# PYTEST_ARGS other than `tests` runs that selection alone, after lint, on the first lane's stack (decided by
# make, not the shell: a selection with double quotes, such as -m "stack and not airflow", broke the shell's test).
TEST_LANE2 = $(wildcard tests/airflow/test_faults.py tests/airflow/test_trigger.py tests/airflow/test_two_triggerers.py)
TEST_LANE2_ENV = AIRLAUNCH_STATE_DIR=$(CURDIR)/.stack-test2 AIRLAUNCH_LOCALSTACK_PORT=4866 AIRLAUNCH_LAMBDA_PORT=9300 \
  AIRLAUNCH_AIRFLOW_PORT=8380 AIRLAUNCH_RIE_PORT_BASE=19500 AIRLAUNCH_ECS_PORT=4867 \
  AIRLAUNCH_LAUNCHER_CONTAINER=airlaunch-launcher-test2
STACK_PYTEST = $(PY) -m pytest -p no:cacheprovider -rfE -m "stack and not compose"

test: ## Every test on the real stacks and the fast lane beside them; starts and afterwards stops what it needs
	@had_engine=$$(docker info >/dev/null 2>&1 && echo yes); \
	  trap '[ -n "$$had_engine" ] || scripts/docker-engine.sh stop' EXIT; \
	  $(MAKE) --no-print-directory setup SETUP_EXTRA="compose-tool registry build" \
	    SETUP_PACKAGES="$(if $(COMPOSE_BIN),,docker-compose) $(if $(shell command -v docker-registry),,docker-registry)" || exit 1; \
	  if [ -n "$(if $(subst tests,,$(strip $(PYTEST_ARGS))),selection)" ]; then \
	    $(MAKE) --no-print-directory lint && $(PY) -m pytest -p no:cacheprovider -rfE --durations=10 $(PYTEST_ARGS); exit; fi; \
	  echo "==> Beside the first lane of stack tests: the second lane (.build/test-stack2.log), the fast lane then lint,"; \
	  echo "    then the compose stack's tests (.build/test-side.log)"; \
	  { $(MAKE) --no-print-directory test-fast > .build/test-side.log 2>&1; fast=$$?; \
	    $(PY) -m pytest -p no:cacheprovider -rfE --durations=5 --junitxml=.build/test-compose.xml -m compose tests \
	      >> .build/test-side.log 2>&1; echo "$$fast $$?" > .build/test-side.rc; } & \
	  { $(TEST_LANE2_ENV) $(STACK_PYTEST) --durations=5 --junitxml=.build/test-stack2.xml $(TEST_LANE2) \
	      > .build/test-stack2.log 2>&1; echo $$? > .build/test-stack2.rc; } & \
	  $(STACK_PYTEST) --durations=10 --junitxml=.build/test-stack.xml tests $(addprefix --ignore=,$(TEST_LANE2)); \
	  stack=$$?; wait; read -r fast compose < .build/test-side.rc; read -r stack2 < .build/test-stack2.rc; \
	  verdict() { [ "$$1" = 0 ] && echo passed || echo FAILED; }; \
	  echo "==> The second lane of stack tests $$(verdict $$stack2):"; \
	  grep -E "passed|failed|error|FAILED|ERROR" .build/test-stack2.log | tail -n 20; \
	  echo "==> The fast lane $$(verdict $$fast), the compose stack's tests $$(verdict $$compose):"; \
	  grep -E "passed|failed|error|Success|Found|would reformat|FAILED|ERROR" .build/test-side.log | tail -n 40; \
	  [ "$$stack" = 0 ] && [ "$$stack2" = 0 ] && [ "$$fast" = 0 ] && [ "$$compose" = 0 ]

# The contributors' lane: every test not marked stack (tests/unit, the launcher's logic on an in-memory
# platform with moto's AWS, and the few others that need no stack), then lint. No Docker engine, no image,
# no stack: DOCKER_HOST points nowhere and the stack fixture refuses, so a test that reaches for either fails
# at once instead of starting something. make test runs all of it again, and the stack's tests.
# Two pytest processes at once, one a core: the AWS deployment's tests (the deploy tool, the template and its
# least privilege, on moto's CloudFormation: about half the time) and all the rest; each prints its own
# summary. FAST_PYTEST_ARGS (files, -k ...) runs one process instead.
FAST_PYTEST = DOCKER_HOST=unix:///nonexistent AIRLAUNCH_TESTS_NO_STACK=1 \
  $(PY) -m pytest -p no:cacheprovider -rfE --durations=3 -m "not stack"
FAST_DEPLOY_TESTS = $(sort $(wildcard tests/unit/test_deploy_*.py tests/unit/test_infra.py tests/unit/test_least_privilege.py))
FAST_PYTEST_ARGS ?=
.PHONY: fast-deploy-tests fast-other-tests
test-fast: $(VENV)/.installed ## The fast lane, no Docker: unit tests and the launcher's logic on a fake platform, then lint (about 2 min)
	@echo "==> Tests not marked stack (no Docker, no images, no stack)$(if $(FAST_PYTEST_ARGS),, in two processes)"
	@$(if $(FAST_PYTEST_ARGS),$(FAST_PYTEST) $(FAST_PYTEST_ARGS),$(MAKE) --no-print-directory -j2 -O fast-deploy-tests fast-other-tests)
	@$(MAKE) --no-print-directory lint

fast-deploy-tests:
	@$(FAST_PYTEST) $(FAST_DEPLOY_TESTS)

fast-other-tests:
	@$(FAST_PYTEST) tests $(addprefix --ignore=,$(FAST_DEPLOY_TESTS))

lint: $(VENV)/.installed ## ruff (lint and format check) and mypy
	@echo "==> ruff and mypy"
	@$(VENV)/bin/ruff check $(LINT_PATHS)
	@$(VENV)/bin/ruff format --check $(LINT_PATHS)
	@$(VENV)/bin/mypy

format: $(VENV)/.installed ## Apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	@$(VENV)/bin/ruff format $(LINT_PATHS)

clean: down ## Remove the environments, build inputs and local state (results and Airflow's runs included)
	rm -rf $(VENV) $(LS_VENV) .build .stack .stack-test2

# -- AWS deployment (docs/deploy-aws.md) -----------------------------------------------------
DEPLOY_STACK ?= airlaunch
DEPLOY_PARAMS ?=
DEPLOY_ARGS = --stack-name $(DEPLOY_STACK) $(foreach p,$(DEPLOY_PARAMS),--param '$(p)')

.PHONY: deploy deploy-localstack destroy smoke smoke-local template wheel

deploy: $(VENV)/.installed .build/aws-lambda-rie .build/pip-cert.pem ## Build and push the images, deploy to AWS via a change set, print the Airflow connection (DEPLOY_STACK=, DEPLOY_PARAMS="K=V ...", AUTO_APPROVE=1)
	@$(PY) -m airlaunch.deploy deploy $(DEPLOY_ARGS)

deploy-localstack: localstack-up ## Deploy the same template into LocalStack (without ECS, which it lacks)
	@AUTO_APPROVE=1 $(PY) -m airlaunch.deploy deploy --localstack $(DEPLOY_ARGS)

destroy: $(VENV)/.installed ## Delete the AWS stack and its ECR repositories with their images; the results bucket stays unless DELETE_RESULTS=1
	@$(PY) -m airlaunch.deploy destroy $(DEPLOY_ARGS) $(if $(DELETE_RESULTS),--delete-results)

smoke: $(VENV)/.installed ## After make deploy: run the diagnostic task through the deployed Lambda, read result and log back, time each step
	@$(PY) -m airlaunch.deploy smoke $(DEPLOY_ARGS)

smoke-local: $(VENV)/.installed ## The same smoke test against the running local stack (LocalStack, emulator, Docker backend; make stack-up)
	@$(PY) -m airlaunch.deploy smoke --localstack $(DEPLOY_ARGS)

wheel: $(VENV)/.installed ## Build dist/airlaunch-<version>-py3-none-any.whl to install into your Airflow (pip install 'dist/...whl[airflow]')
	@$(VENV)/bin/pip wheel -q --no-deps --no-build-isolation -w dist . 2>&1 | grep -v "is ignored" || true
	@ls dist/airlaunch-*.whl

template: $(VENV)/.installed ## Print the template make deploy deploys (infra/template.yaml plus one task definition per catalog task)
	@$(PY) -m airlaunch.deploy template $(DEPLOY_ARGS)

# -- Compose stack (docker-compose.yml, docs/compose.md) -------------------------------------
# Airflow (Celery, Postgres, Redis), LocalStack and the launcher Lambda as one compose project.
# Published ports: AIRFLOW_PORT, LOCALSTACK_PORT, LAUNCHER_PORT (8080, 4566, 9000) on AIRLAUNCH_BIND.
COMPOSE_PROJECT ?= airlaunch
COMPOSE_BIN ?= $(shell if command -v docker-compose >/dev/null 2>&1; then echo docker-compose; \
  elif docker compose version >/dev/null 2>&1; then echo docker compose; fi)
COMPOSE_WAIT_SECONDS ?= 300
DOCKER_SOCKET ?= /var/run/docker.sock
AIRFLOW_AUTH_DIR ?= $(CURDIR)/.stack/compose-airflow
AIRLAUNCH_NETWORK ?= $(COMPOSE_PROJECT)
# What every compose command needs: the socket's group for the launcher, Airflow's uid and
# passwords folder, the network the task containers join (named after the project).
COMPOSE = DOCKER_GID=$$(stat -c %g $(DOCKER_SOCKET)) DOCKER_SOCKET=$(DOCKER_SOCKET) COMPOSE_PROJECT_NAME=$(COMPOSE_PROJECT) \
  AIRFLOW_UID=$${AIRFLOW_UID:-$$(id -u)} AIRFLOW_AUTH_DIR=$(AIRFLOW_AUTH_DIR) AIRLAUNCH_NETWORK=$(AIRLAUNCH_NETWORK) \
  $(COMPOSE_BIN) -p $(COMPOSE_PROJECT)

.PHONY: build up compose-down compose-logs compose-check compose-env

compose-check: compose-tool engine
	@[ -n "$(COMPOSE_BIN)" ] || { echo "error: neither docker-compose nor the docker compose plugin was found;" \
	  "install one (apt-get install docker-compose, or Docker's compose plugin)" >&2; exit 1; }
	@[ -S $(DOCKER_SOCKET) ] || { echo "error: no Docker socket at $(DOCKER_SOCKET); run make engine" \
	  "(or set DOCKER_SOCKET=...)" >&2; exit 1; }

build: compose-check .build/aws-lambda-rie .build/pip-cert.pem | .build/rootfs-bookworm.tar .build/rootfs-trixie.tar ## Build every compose image (Airflow, Postgres, Redis, LocalStack, launcher, tasks); COMPOSE_BUILD_ARGS=--no-cache
	@base=$$(scripts/base-image.sh) && trixie=$$(scripts/base-image.sh trixie) && \
	  export AIRLAUNCH_BASE_IMAGE=$$base AIRLAUNCH_TRIXIE_BASE_IMAGE=$$trixie && \
	  services="postgres redis launcher airflow-init reference-tasks" && \
	  if [ -n "$${LOCALSTACK_AUTH_TOKEN:-}" ]; then \
	    [ -n "$${LOCALSTACK_IMAGE:-}" ] || { echo "error: LOCALSTACK_AUTH_TOKEN is set: also set" \
	      "LOCALSTACK_IMAGE=localstack/localstack:<tag> (docs/compose.md)" >&2; exit 1; }; \
	    echo "==> Pulling $$LOCALSTACK_IMAGE (LOCALSTACK_AUTH_TOKEN set)"; $(COMPOSE) pull localstack || exit 1; \
	  else services="$$services localstack"; fi && \
	  echo "==> Building compose images (bases $$base, $$trixie): task-runtime, then $$services" && \
	  $(COMPOSE) --profile build build -q $(COMPOSE_BUILD_ARGS) task-runtime && \
	  $(COMPOSE) --profile build build -q --parallel $(COMPOSE_BUILD_ARGS) $$services || \
	  { echo "error: an image build failed (output above); behind a TLS-intercepting proxy export" \
	    "PIP_CERT=<CA bundle> and remove .build/pip-cert.pem" >&2; exit 1; }

up: build ## Start the compose stack, wait until every service is healthy, print the URLs
	@mkdir -p $(AIRFLOW_AUTH_DIR)
	@echo "==> Starting compose project $(COMPOSE_PROJECT)"
	@$(COMPOSE) up -d --remove-orphans || { echo "error: compose up failed; see make compose-logs" >&2; exit 1; }
	@scripts/compose-wait.sh $(COMPOSE_PROJECT) $(COMPOSE_WAIT_SECONDS)
	@bind=$${AIRLAUNCH_BIND:-127.0.0.1}; \
	  echo "    Airflow     http://$$bind:$${AIRFLOW_PORT:-8080}  (user admin, password in" \
	    "$(AIRFLOW_AUTH_DIR)/simple_auth_manager_passwords.json.generated)"; \
	  echo "    LocalStack  http://$$bind:$${LOCALSTACK_PORT:-4566}  (bucket $${AIRLAUNCH_BUCKET:-airlaunch-results})"; \
	  echo "    Lambda      http://$$bind:$${LAUNCHER_PORT:-9000}/2015-03-31/functions/function/invocations"

compose-down: compose-check ## Stop the compose stack and its task containers (COMPOSE_DOWN_ARGS=-v also drops its volumes)
	@ids=$$(docker ps -aq --filter "network=$(AIRLAUNCH_NETWORK)" --filter label=airlaunch.identity); \
	  if [ -n "$$ids" ]; then echo "==> Removing task containers on $(AIRLAUNCH_NETWORK)"; docker rm -f $$ids >/dev/null; fi
	@$(COMPOSE) --profile build down --remove-orphans $(COMPOSE_DOWN_ARGS)

compose-logs: compose-check ## Show the compose stack's logs: make compose-logs [SERVICE=airflow-worker] [LINES=100]
	@$(COMPOSE) logs --no-color --tail=$(or $(LINES),50) $(SERVICE)

# What `python -m airlaunch.stack env` is to the embedded stack: the airlaunch CLI (runs, cache,
# secret set) and boto3 pointed at the compose stack's LocalStack on this machine.
compose-env: ## Print the exports that point the airlaunch CLI at the compose stack: eval "$(make -s compose-env)"
	@host=$${AIRLAUNCH_BIND:-127.0.0.1}; [ "$$host" != 0.0.0.0 ] || host=127.0.0.1; \
	  echo "export AWS_ENDPOINT_URL=http://$$host:$${LOCALSTACK_PORT:-4566}" \
	    "AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test" \
	    "AIRLAUNCH_BUCKET=$${AIRLAUNCH_BUCKET:-airlaunch-results}"

# -- Benchmarks (bench/, docs/benchmarks.md) -------------------------------------------------
.PHONY: bench

bench: install images ## Benchmarks on an Airflow of their own (port 8180): make bench [PARTS=launch,latency,slots,scale,floors,footprint,cache,scale-ecs]
	@PARTS='$(PARTS)' $(PY) -m bench.run

# -- Fault suite (bench/faults, docs/faults.md) ------------------------------------------------
# Breaks an embedded stack of its own (.stack-faults; LocalStack 4766, Lambda 9200, Airflow 8280,
# emulators 19400+, in the ECS mode the emulated account on 4767), so the stack you work with is left
# alone; AIRLAUNCH_* in the environment win. The scenarios run on the launcher's Docker backend, then
# on the stack's ECS mode (BACKEND=docker or BACKEND=ecs: one of them; FAULTS_BACKENDS=docker,ecs).
# The dockerd-restart scenario restarts the Docker engine: it runs only when no other container does.
FAULTS_STATE_DIR ?= $(CURDIR)/.stack-faults
FAULTS_BUILD ?= 1
FAULTS_BACKENDS ?= $(if $(filter command line environment,$(origin BACKEND)),$(BACKEND),docker,ecs)
.PHONY: faults

faults: install $(if $(filter 0,$(FAULTS_BUILD)),engine,images) ## Break the stack on purpose (kills, OOM, outages, cancels...) on Docker and ECS, print the table, write docs/faults.md: make faults [FAULTS=kill,oom] [FAULTS_SKIP=fan-out-kills] [BACKEND=ecs]
	@AIRLAUNCH_STATE_DIR=$${AIRLAUNCH_STATE_DIR:-$(FAULTS_STATE_DIR)} \
	  AIRLAUNCH_LOCALSTACK_PORT=$${AIRLAUNCH_LOCALSTACK_PORT:-4766} AIRLAUNCH_LAMBDA_PORT=$${AIRLAUNCH_LAMBDA_PORT:-9200} \
	  AIRLAUNCH_AIRFLOW_PORT=$${AIRLAUNCH_AIRFLOW_PORT:-8280} AIRLAUNCH_RIE_PORT_BASE=$${AIRLAUNCH_RIE_PORT_BASE:-19400} \
	  AIRLAUNCH_ECS_PORT=$${AIRLAUNCH_ECS_PORT:-4767} \
	  AIRLAUNCH_LAUNCHER_CONTAINER=$${AIRLAUNCH_LAUNCHER_CONTAINER:-airlaunch-launcher-faults} \
	  FAULTS_DOCKERD_PIDFILES=$${FAULTS_DOCKERD_PIDFILES:-$(CURDIR)/.stack/dockerd.pid} \
	  FAULTS='$(FAULTS)' FAULTS_SKIP='$(FAULTS_SKIP)' FAULTS_BACKENDS='$(FAULTS_BACKENDS)' $(PY) -m bench.faults
