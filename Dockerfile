# syntax=docker/dockerfile:1.7
# capgate container image: `docker build -t ghcr.io/capgate/capgate:0.1.0 .`
# The Helm chart (helm/capgate) points at this image; its entrypoint is `capgate`, and
# the chart runs `capgate serve --config /etc/capgate/capgate.yaml`.
#
# The base image is pinned by tag. Pin it by digest too when you build, e.g.
#   docker buildx imagetools inspect python:3.11-slim-bookworm   # -> sha256:...
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: build the wheel, install it into a virtualenv ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ service/
COPY clients/python/ clients/python/
RUN python -m venv /opt/capgate/venv \
 && /opt/capgate/venv/bin/pip install --upgrade "pip>=25" \
 && /opt/capgate/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/capgate/venv/bin/pip install /wheels/capgate-*.whl \
 && /opt/capgate/venv/bin/capgate --help > /dev/null

# ---- runtime: the virtualenv, the default bundle, a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="capgate" \
      org.opencontainers.image.description="Policy decision sidecar for AI agents" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
ENV PATH=/opt/capgate/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 capgate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin capgate \
 && mkdir -p /var/lib/capgate /var/cache/capgate/bundles /var/log/capgate /var/run/capgate /etc/capgate \
 && chown 10001:10001 /var/lib/capgate /var/cache/capgate/bundles /var/log/capgate /var/run/capgate
COPY --from=builder /opt/capgate/venv /opt/capgate/venv
COPY bundles/default/ /opt/capgate/bundles/default/
# The outbox and the bundle store are volumes (emptyDir in the Helm chart); the root
# filesystem can be read-only.
VOLUME ["/var/lib/capgate"]
WORKDIR /var/lib/capgate
USER 10001:10001
EXPOSE 50051 9464
ENTRYPOINT ["capgate"]
CMD ["serve", "--bundle", "/opt/capgate/bundles/default"]
