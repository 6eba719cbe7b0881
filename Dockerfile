# A TLS-only Dask cluster (scheduler + N workers) in one container; see README.md.
# BASE_IMAGE: any Debian-based image with python3 3.11 and venv. `make build` passes a locally built
# Debian image when no registry is reachable; a plain `docker build .` uses the public slim image,
# pinned by the digest of its multi-platform index (the tag only says which; README, "Building",
# says how to move it to a newer one).
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# poetry and its plugins, every file hash-checked: the list `make` installs too (tools/poetry/)
COPY tools/poetry/requirements.txt /src/poetry-requirements.txt
# The optional secret `pip-ca` is an extra CA bundle for pip behind a TLS-inspecting proxy; as a secret
# mount it never lands in a layer or in `docker history`.
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip-ca \
    set -eux; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    python3 -m venv /opt/poetry; \
    /opt/poetry/bin/pip install --no-deps --require-hashes --only-binary=:all: \
      -r /src/poetry-requirements.txt
# Dependency groups of poetry.lock beside main: `complete` (dataframes: pandas, pyarrow, lz4) and
# `cluster` (your own packages). The slim image: DEPENDENCY_GROUPS=cluster (`make build GROUPS=cluster`).
ARG DEPENDENCY_GROUPS=complete,cluster
COPY pyproject.toml poetry.lock /src/
COPY docker/install-locked.sh /src/docker/
# your own folders, for path dependencies in the `cluster` group
COPY packages/ /src/packages/
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip-ca \
    set -eux; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    python3 -m venv /opt/venv; \
    /src/docker/install-locked.sh /opt/poetry/bin/poetry /src /opt/venv "$DEPENDENCY_GROUPS"; \
    /opt/venv/bin/pip uninstall -y pip setuptools; \
    site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \
    # the packages' own test suites and C headers are dead weight, and tornado's tests carry a key
    find "$site" -depth -type d \( -name tests -o -path '*/tornado/test' -o -path '*/pyarrow/include' -o -path '*/numpy/_core/include' \) \
      -exec rm -rf {} +; \
    # Arrow Flight, an RPC framework dask does not use: 35 MB
    rm -f "$site"/pyarrow/*flight* "$site"/pyarrow/*.pyx "$site"/pyarrow/*.pxd; \
    # our package lives in /opt/app; a .pth puts it on the path of every interpreter in the venv
    echo /opt/app > "$site/dask_tls.pth"

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
# The image's contract (entrypoint/contract.py; tests/test_contract.py checks these are the same):
# its user, its spill directory, its ports.
ARG UID=10001 SCRATCH=/scratch SCHEDULER_PORT=8786 DASHBOARD_PORT=8787
LABEL org.opencontainers.image.title="dask-tls" \
      org.opencontainers.image.description="A TLS-only Dask scheduler and N workers, certificate and key from the environment" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause"
RUN set -eux; \
    groupadd --gid "$UID" dask; \
    useradd --uid "$UID" --gid "$UID" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin dask; \
    # no setuid/setgid program: nothing in the container can gain privileges through one
    find / -xdev -type f -perm /6000 -exec chmod a-s {} +; \
    # the workers' scratch space (spilled data): the user's, and group 0's for any --user N:0
    mkdir -m 0770 "$SCRATCH"; \
    chown "$UID:0" "$SCRATCH"
COPY --from=build /opt/venv /opt/venv
# Code is owned by root and read-only for the runtime user.
COPY entrypoint/ /opt/app/entrypoint/
RUN set -eux; \
    /opt/venv/bin/python -m compileall -q /opt/app; \
    /opt/venv/bin/python -c "import entrypoint.start, entrypoint.pid1, entrypoint.health, distributed, bokeh, cryptography"; \
    if [ -d /opt/venv/lib/python3.11/site-packages/pandas ]; then /opt/venv/bin/python -c "import pandas, pyarrow, lz4, dask.dataframe"; fi
# DASK_TEMPORARY_DIRECTORY: where workers spill, a volume of its own (on disk, also under --read-only)
# IN_DASK_TLS_IMAGE: the tools (certs new/renew) see the user's files only under the mounted folder
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DASK_TEMPORARY_DIRECTORY=${SCRATCH} \
    IN_DASK_TLS_IMAGE=1
VOLUME ${SCRATCH}
WORKDIR /opt/app
USER ${UID}:${UID}
EXPOSE ${SCHEDULER_PORT} ${DASHBOARD_PORT}
STOPSIGNAL SIGTERM
# Proves the scheduler answers over mutual TLS with all workers registered. `env -i`: the check runs
# without the container's environment, so it never holds the PEM (docker exec would hand it over).
HEALTHCHECK --interval=10s --timeout=8s --start-period=30s --retries=3 \
    CMD ["/usr/bin/env", "-i", "/opt/venv/bin/python", "-m", "entrypoint.health"]
# -P: never import from the working directory (tools run with -w on a mounted folder)
ENTRYPOINT ["/opt/venv/bin/python", "-P", "-m", "entrypoint"]
