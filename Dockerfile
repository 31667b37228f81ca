# syntax=docker/dockerfile:1.7
# capgate container image: `docker build -t ghcr.io/capgate/capgate:0.1.0 .`
# The Helm chart (helm/capgate) points at this image (image.repository, tag = the chart's
# appVersion); its entrypoint is `capgate`, and the chart runs
# `capgate serve --config /etc/capgate/capgate.yaml`, with the default bundle at
# /opt/capgate/bundles/default, a read-only root filesystem and emptyDirs on the
# writable directories below (/var/lib/capgate, /var/cache/capgate/bundles,
# /var/log/capgate, /var/run/capgate, /tmp).
#
# Without a Docker engine: scripts/build_image.sh builds this file with buildah, FROM a
# debootstrapped stand-in for debian:bookworm-slim (--build-arg BASE_IMAGE=...); CI
# builds it that way and tests the image (tests/integration/test_image.py).
#
# Base: Debian 12 (bookworm) slim, pinned by digest. Python is Debian's python3 (3.11),
# security-supported with the distribution. The digest is the one a public BuildKit log
# of a real build resolved debian:bookworm-slim to; it could not be verified from the
# machine that wrote this file (no access to Docker Hub). To check or refresh it:
#   docker buildx imagetools inspect debian:bookworm-slim     # Digest: sha256:...
# (or let Renovate's dockerfile manager keep it current), then update the line below.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251

# ---- builder: build the wheel, install it and its dependencies into a virtualenv ----
FROM ${BASE_IMAGE} AS builder
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# ca-certificates: pip verifies PyPI with the system trust store. libatomic1: regopy's
# native library links to it (not in its wheel); the smoke test below loads it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libatomic1 python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Everything fetched from PyPI, in one step keyed on pyproject.toml and the lock alone (a
# source change reuses it): /opt/build, a virtualenv with pip and the build backend
# ([build-system] requires; not shipped); /opt/capgate/venv, the runtime one, without pip
# (pip installs into it with --python), with exactly the versions and hashes of
# requirements/image.lock (pip-compile --generate-hashes of pyproject's dependencies;
# `make lock` regenerates it), wheels only: two builds of one commit ship the same code.
# Optional build secret "ca-bundle": a CA bundle pip trusts instead of the image's, for
# builds behind a TLS-intercepting proxy (`--secret id=ca-bundle,src=/etc/ssl/certs/...`;
# scripts/build_image.sh passes the host's). Mounted for this step only, never stored.
COPY pyproject.toml ./
COPY requirements/image.lock requirements/
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); open("/tmp/build.txt", "w").write("\n".join(p["build-system"]["requires"]))' \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip install --upgrade "pip>=25" \
 && /opt/build/bin/pip install -r /tmp/build.txt \
 && python3 -m venv --without-pip /opt/capgate/venv \
 && /opt/build/bin/pip --python /opt/capgate/venv/bin/python install --only-binary=:all: \
      --require-hashes --no-deps -r requirements/image.lock
# capgate itself, offline: build the wheel, install it without dependencies, check.
COPY README.md ./
COPY service/ service/
COPY clients/python/ clients/python/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /wheels . \
 && /opt/build/bin/pip --python /opt/capgate/venv/bin/python install --no-deps --no-index \
      /wheels/capgate-*.whl \
 && /opt/build/bin/pip --python /opt/capgate/venv/bin/python check \
 && /opt/capgate/venv/bin/capgate --help > /dev/null

# ---- runtime: Debian's python3, the virtualenv, the default bundle, a non-root user ----
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="capgate" \
      org.opencontainers.image.description="Policy decision sidecar for AI agents" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# python3: the interpreter the virtualenv links to (the same package as in the builder).
# ca-certificates: the trust store for https JWKS URLs and rediss:// (Python's ssl).
# libatomic1: regopy's native library (the embedded Rego engine) needs libatomic.so.1.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libatomic1 python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old
RUN groupadd --system --gid 10001 capgate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin capgate \
 && mkdir -p /var/lib/capgate /var/cache/capgate/bundles /var/log/capgate /var/run/capgate \
      /etc/capgate \
 && chown 10001:10001 /var/lib/capgate /var/cache/capgate/bundles /var/log/capgate \
      /var/run/capgate
COPY --from=builder /opt/capgate/venv /opt/capgate/venv
COPY bundles/default/ /opt/capgate/bundles/default/
ENV PATH=/opt/capgate/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The outbox (and the default one, ./capgate-outbox.db) and the bundle store are volumes
# (emptyDir in the Helm chart); everything else is read-only: owned by root.
VOLUME ["/var/lib/capgate"]
WORKDIR /var/lib/capgate
USER 10001:10001
# The chart's ports: gRPC (server.listen), health only (server.health_listen, the probes'
# port) and Prometheus metrics (server.metrics_listen). Without a config, gRPC and metrics
# listen on 127.0.0.1 and health is off; the chart sets 0.0.0.0 in standalone mode.
EXPOSE 50051 50052 9464
ENTRYPOINT ["capgate"]
CMD ["serve", "--bundle", "/opt/capgate/bundles/default"]
