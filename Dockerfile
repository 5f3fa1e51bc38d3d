# syntax=docker/dockerfile:1
#
# Brik Cloud's image: one image for every process, chosen by its command —
#   docker run … brik-cloud            the API (`serve`, the default, on 0.0.0.0:8000)
#   docker run … brik-cloud worker     a push worker
#   docker run … brik-cloud migrate    apply migrations (one-shot, before a new version starts)
#   docker run … brik-cloud bootstrap  create the first admin, organization, project and keys
# configured only by BRIK_* environment variables (docs/configuration.md). It runs as uid
# 10001 on a read-only root filesystem: only /tmp needs to be writable.
#
# Reproducible: every dependency comes from requirements.lock — pinned, hash-checked, wheels
# only — so a build today and one next year install the same files. tests/image/ builds the
# same virtualenv from this file without a container runtime and runs the entrypoint from it.

# Fully qualified (Podman and Buildah refuse short names by default); to pin the base by
# digest: --build-arg PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm@sha256:…
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

# --- builder: a virtualenv with the locked dependencies and Brik Cloud's own wheel -----------
FROM ${PYTHON_IMAGE} AS builder

ENV VIRTUAL_ENV=/opt/brik-cloud \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv "$VIRTUAL_ENV"
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
WORKDIR /src

# The lock alone first: this layer is rebuilt when a dependency changes, not on every code
# change. --only-binary: nothing is compiled, so no build of a dependency can differ.
COPY requirements.lock ./
RUN pip install --require-hashes --only-binary=:all: --no-deps -r requirements.lock

# Brik Cloud's own pure-Python wheel, built by the setuptools pinned in the lock (no build
# isolation: nothing unpinned takes part), installed without touching its dependencies; then
# pip check proves the lock held everything it needs. pip compiles the bytecode here, so the
# read-only image never needs to write it.
COPY pyproject.toml README.md ./
COPY controlplane/ controlplane/
COPY workers/ workers/
RUN pip wheel --no-deps --no-build-isolation --wheel-dir dist . \
    && pip install --no-deps --no-index dist/*.whl \
    && pip check

# --- the image: the virtualenv on a clean base, no compilers, no build tools ---------------
FROM ${PYTHON_IMAGE}

# Keep VERSION equal to pyproject.toml's version (a test checks); pass REVISION and CREATED
# from CI: --build-arg REVISION=$(git rev-parse HEAD) --build-arg CREATED=$(date -u +%FT%TZ)
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="Brik Cloud" \
      org.opencontainers.image.description="Self-hosted multi-tenant push and backend platform for mobile apps" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.created="$CREATED" \
      org.opencontainers.image.base.name="$PYTHON_IMAGE"

# A numeric USER, so Kubernetes' runAsNonRoot can verify it; the passwd entry is there for
# libraries that look the user up (asyncpg's default user name, for one).
# /var/lib/brik/exports: where project export archives go (BRIK_EXPORT_DIR). Owned by the user,
# so a volume mounted there (compose's named volume, a Kubernetes claim) starts writable.
RUN groupadd --gid 10001 brik \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin brik \
    && mkdir -p /var/lib/brik/exports && chown 10001:10001 /var/lib/brik/exports

# Owned by root and read-only to the user: the process cannot change its own code. The same
# path as in the builder: a virtualenv's scripts name their interpreter by absolute path.
ENV VIRTUAL_ENV=/opt/brik-cloud
COPY --from=builder /opt/brik-cloud /opt/brik-cloud
ENV PATH="$VIRTUAL_ENV/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# An empty working directory: the database commands look for a `brik-cloud dev` install in
# ./.brik, and there is none here.
WORKDIR /srv/brik-cloud
USER 10001:10001
EXPOSE 8000

# No HEALTHCHECK, on purpose. Kubernetes ignores it (the Helm chart probes /healthz and
# /readyz itself), and one image runs several commands: only `serve` answers HTTP on 8000, a
# worker's probes are on BRIK_WORKER_METRICS_PORT when that is set, and `migrate` and
# `bootstrap` are one-shot — a built-in check would be wrong for most of them. The docker
# compose file (helm/compose/) gives each service the check that fits it.
#
# brik-cloud runs as PID 1 without an init: `serve` and `worker` handle SIGTERM themselves
# (a graceful stop, then exit status 0) and start no child processes to reap.
ENTRYPOINT ["brik-cloud"]
CMD ["serve"]
