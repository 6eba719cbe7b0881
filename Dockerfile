# A TLS-only Dask cluster (scheduler + N workers) in one container; see README.md.
# BASE_IMAGE: any Debian-based image with python3 3.11 and venv. `make build` passes a locally built
# Debian image when no registry is reachable; a plain `docker build .` uses the public slim image.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG POETRY_VERSION=2.5.1
ARG POETRY_EXPORT_VERSION=1.10.1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# The optional secret `pip-ca` is an extra CA bundle for pip behind a TLS-inspecting proxy; as a secret
# mount it never lands in a layer or in `docker history`.
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip-ca \
    set -eux; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    python3 -m venv /opt/poetry; \
    /opt/poetry/bin/pip install "poetry==${POETRY_VERSION}" "poetry-plugin-export==${POETRY_EXPORT_VERSION}"
COPY pyproject.toml poetry.lock /src/
# poetry exports the lock offline; pip installs exactly it, every file hash checked, wheels only.
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip-ca \
    set -eux; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    /opt/poetry/bin/poetry export --directory /src --only main --format requirements.txt --output /tmp/requirements.txt; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-deps --require-hashes --only-binary=:all: -r /tmp/requirements.txt; \
    /opt/venv/bin/pip uninstall -y pip setuptools; \
    # the packages' own test suites are dead weight, and tornado's carries a private key
    site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \
    find "$site" -depth -type d \( -name tests -o -path '*/tornado/test' \) -exec rm -rf {} +; \
    # our package lives in /opt/app; a .pth puts it on the path of every interpreter in the venv
    echo /opt/app > "$site/dask_tls.pth"

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="dask-tls" \
      org.opencontainers.image.description="A TLS-only Dask scheduler and N workers, certificate and key from the environment" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause"
RUN set -eux; \
    groupadd --gid 10001 dask; \
    useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin dask
COPY --from=build /opt/venv /opt/venv
# Code is owned by root and read-only for the runtime user.
COPY entrypoint/ /opt/app/entrypoint/
RUN set -eux; \
    /opt/venv/bin/python -m compileall -q /opt/app; \
    /opt/venv/bin/python -c "import entrypoint.__main__, entrypoint.health, distributed, bokeh, cryptography"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/app
USER 10001:10001
EXPOSE 8786 8787
STOPSIGNAL SIGTERM
# Proves the scheduler answers over mutual TLS with all workers registered. `env -i`: the check runs
# without the container's environment, so it never holds the PEM (docker exec would hand it over).
HEALTHCHECK --interval=10s --timeout=8s --start-period=30s --retries=3 \
    CMD ["/usr/bin/env", "-i", "/opt/venv/bin/python", "-m", "entrypoint.health"]
# -P: never import from the working directory (tools run with -w on a mounted folder)
ENTRYPOINT ["/opt/venv/bin/python", "-P", "-m", "entrypoint"]
