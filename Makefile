# The two commands: `make run` (a local TLS cluster) and `make test` (everything, on the real engine).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

IMAGE ?= dask-tls:dev
NAME ?= dask-tls
# Debian's client: it drives the engine's BuildKit (RUN --mount, --secret); others may lack buildx.
DOCKER ?= $(shell [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)
export DOCKER_BUILDKIT := 1
# An extra CA bundle for pip inside the build (TLS-inspecting proxies); empty to pass none.
BUILD_CA ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
# Your own material for `make run`; left empty, throwaway dev certificates are made in certs/.
CERT ?=
KEY ?=
CA ?=
# `make run`: the cluster's size (THREADS_PER_WORKER and MEMORY_PER_WORKER empty: the image sizes
# them to the container), where its two ports are published (this machine only, 127.0.0.1, unless
# PUBLISH says otherwise: PUBLISH=0.0.0.0 for every interface), and any other `docker run` options
NUM_WORKERS ?= 2
THREADS_PER_WORKER ?=
MEMORY_PER_WORKER ?=
PUBLISH ?= 127.0.0.1
SCHEDULER_PORT ?= 8786
DASHBOARD_PORT ?= 8787
RUN_OPTIONS ?=
# poetry.lock's dependency groups in the image beside main: complete (dataframes) and cluster (yours)
GROUPS ?= complete,cluster
PYTHON ?= python3
# `make client`: where the client environment goes, and which certificates it uses
CLIENT_VENV ?= .client
CERTS ?= certs
CLIENT ?= client
# The project's own poetry and plugins, installed into tools/.poetry on first use from a locked list
# with every file's hash (tools/poetry/): make test needs no poetry on PATH (make run no Python).
POETRY_HOME := tools/.poetry
POETRY := $(POETRY_HOME)/bin/poetry
POETRY_LOCKED := tools/poetry/requirements.txt
VENV := .venv/bin
# command-line tools locked apart from poetry.lock (sslyze, hadolint): tools/poetry.lock
TOOLS := tools/.venv/bin

export POETRY_VIRTUALENVS_IN_PROJECT := true
# poetry-plugin-pypi-mirror (where installed) reads this: pip's own default index, for registries
# without PyPI's JSON API. Computed at run time so that no index host is written into any file.
export POETRY_PYPI_MIRROR_URL ?= $(shell $(PYTHON) -c "from pip._internal.models.index import PyPI; print(PyPI.simple_url)" 2>/dev/null)

.PHONY: help venv tools build client certs run stop test system-tools unit lint bench clean poetry-lock add

help:
	@echo "make run    build the image, make dev certificates if none are given, start a cluster"
	@echo "           [NUM_WORKERS=2 THREADS_PER_WORKER= MEMORY_PER_WORKER= PUBLISH=127.0.0.1"
	@echo "            SCHEDULER_PORT=8786 DASHBOARD_PORT=8787 RUN_OPTIONS=\"--memory 8g\"]"
	@echo "make test   its system tools (installed as root on Debian), lint, unit tests, then build"
	@echo "           the image and test it on the Docker engine"
	@echo "make unit   lint and the tests that need only Python (no Docker, no system tool)"
	@echo "make client a client environment with the image's Python and packages, set up for TLS"
	@echo "make add PACKAGES=\"scikit-learn ./packages/mycode\"   your own packages, into poetry.lock's cluster group"
	@echo "make build [IMAGE=name:tag] | make certs | make lint | make tools | make stop | make bench | make clean"

$(POETRY): $(POETRY_LOCKED)
	rm -rf $(POETRY_HOME)
	$(PYTHON) -m venv $(POETRY_HOME)
	$(POETRY_HOME)/bin/pip install --quiet --no-deps --require-hashes --only-binary=:all: \
	  -r $(POETRY_LOCKED)

# your own packages into poetry.lock's `cluster` group, with the project's poetry: only the lock
# changes (--lock); `make build` bakes them in (README, "Your own packages")
add: | $(POETRY)
	$(if $(PACKAGES),,$(error give PACKAGES, e.g. make add PACKAGES="scikit-learn ./packages/mycode"))
	$(POETRY) add --lock --group cluster $(PACKAGES)

# after a version in tools/poetry/pyproject.toml changed: its lock, and the list make installs
poetry-lock: | $(POETRY)
	$(POETRY) lock --directory tools/poetry
	$(POETRY) export --directory tools/poetry --format requirements.txt --output requirements.txt

venv: .venv/.synced
.venv/.synced: pyproject.toml poetry.lock | $(POETRY)
	$(POETRY) sync --quiet
	touch $@

tools: tools/.venv/.synced
tools/.venv/.synced: tools/pyproject.toml tools/poetry.lock docker/install-locked.sh | $(POETRY)
	rm -rf tools/.venv
	$(PYTHON) -m venv tools/.venv
	docker/install-locked.sh $(POETRY) tools tools/.venv "" sslyze >/dev/null
	touch $@

build:
	base="$${BASE_IMAGE:-$$(DOCKER=$(DOCKER) docker/base-image.sh)}"; \
	$(DOCKER) build --build-arg BASE_IMAGE="$$base" --build-arg DEPENDENCY_GROUPS="$(GROUPS)" \
	  $(if $(BUILD_CA),--secret id=pip-ca$(,)src=$(BUILD_CA)) -t $(IMAGE) .

# PYTHON is passed on only when you set it: otherwise the script looks for the image's version
client: build $(if $(filter certs,$(CERTS)),certs) | $(POETRY)
	DOCKER=$(DOCKER) IMAGE=$(IMAGE) POETRY=$(POETRY) DEPENDENCY_GROUPS=$(GROUPS) VENV=$(CLIENT_VENV) \
	  CERTS=$(CERTS) CLIENT=$(CLIENT) \
	  PYTHON=$(if $(filter command line environment,$(origin PYTHON)),$(PYTHON)) \
	  docker/client-env.sh

# made by the image itself: `make run` needs only Docker and make
certs: certs/cluster.pem
certs/cluster.pem:
	$(MAKE) build
	$(DOCKER) run --rm -u "$$(id -u):$$(id -g)" -v "$$PWD:$$PWD" -w "$$PWD" $(IMAGE) \
	  certs new --out certs --days 90 >/dev/null

# RUN_OPTIONS reaches the script through the environment, quotes and all
run: export RUN_OPTIONS := $(RUN_OPTIONS)
run: build $(if $(CERT),,certs)
	DOCKER=$(DOCKER) IMAGE=$(IMAGE) NAME=$(NAME) CERT=$(CERT) KEY=$(KEY) CA=$(CA) \
	  NUM_WORKERS=$(NUM_WORKERS) THREADS_PER_WORKER=$(THREADS_PER_WORKER) \
	  MEMORY_PER_WORKER=$(MEMORY_PER_WORKER) PUBLISH=$(PUBLISH) \
	  HOST_SCHEDULER_PORT=$(SCHEDULER_PORT) HOST_DASHBOARD_PORT=$(DASHBOARD_PORT) \
	  docker/run-local.sh

stop:
	$(DOCKER) stop $(NAME) && $(DOCKER) rm $(NAME)

lint: venv tools
	$(VENV)/ruff check entrypoint tests bench
	$(VENV)/ruff format --check entrypoint tests bench
	$(VENV)/mypy
	$(TOOLS)/hadolint Dockerfile

# first the system tools the suite needs (installed as root on Debian, else named in one line)
test: system-tools lint build
	IMAGE=$(IMAGE) DOCKER=$(DOCKER) $(VENV)/pytest

system-tools:
	DOCKER=$(DOCKER) docker/system-tools.sh

# Python and make only: no Docker, no system tool
unit: lint
	$(VENV)/pytest -m "not container and not system"

# this image against a rebuild of the seed's setup on the same base: bench/results/ (about 15 min)
bench: venv
	base="$${BASE_IMAGE:-$$(DOCKER=$(DOCKER) docker/base-image.sh)}"; \
	DOCKER=$(DOCKER) $(VENV)/python -m bench.run --base "$$base" $(BENCH_ARGS) \
	  $(if $(BUILD_CA),--build-option=--secret=id=pip-ca$(,)src=$(BUILD_CA)) \
	  $(if $(POETRY_PYPI_MIRROR_URL),--build-option=--build-arg=POETRY_PYPI_MIRROR_URL=$(POETRY_PYPI_MIRROR_URL))

clean:
	-$(DOCKER) rm -f $(NAME) 2>/dev/null
	rm -rf .venv tools/.venv $(POETRY_HOME) $(CLIENT_VENV) certs .mypy_cache .ruff_cache .pytest_cache

, := ,
