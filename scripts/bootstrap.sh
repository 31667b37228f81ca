#!/usr/bin/env bash
# Installs everything capgate needs on a fresh Debian machine, idempotently:
#   - redis-server (Debian), used by the tests and `capgate serve`;
#   - rsyslog, nginx, a JRE and Maven (Debian): real receivers and servers the tests run;
#   - buildah and debootstrap (Debian): scripts/build_image.sh builds the Dockerfile;
#   - opa, buf and helm, pinned, built with `go install` into .tools/bin; k8svalidate
#     (tools/k8svalidate) built with `go build`;
#   - a virtualenv in .venv with capgate and its dev extras.
# Each step is skipped when its result is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

OPA_VERSION="v1.22.2"
BUF_VERSION="v1.75.0"
HELM_VERSION="v3.22.0"
PYTHON="${PYTHON:-python3}"

SUDO=""
[ "$(id -u)" = "0" ] || SUDO="sudo"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bootstrap: installing redis-server from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# rsyslogd and its GnuTLS driver: the receiver the syslog sink's tests start.
if [ ! -x /usr/sbin/rsyslogd ] || ! compgen -G "/usr/lib/*/rsyslog/lmnsd_gtls.so" >/dev/null; then
  echo "bootstrap: installing rsyslog and rsyslog-gnutls from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rsyslog rsyslog-gnutls >/dev/null
fi

# nginx: the bundle server the bundle tests poll (static files, ETag, 304).
if [ ! -x /usr/sbin/nginx ]; then
  echo "bootstrap: installing nginx from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-core >/dev/null
fi

# buildah and debootstrap: scripts/build_image.sh builds the Dockerfile without a Docker
# engine, FROM a debootstrapped Debian base (tests/integration/test_image.py runs it).
if ! command -v buildah >/dev/null 2>&1 || [ ! -x /usr/sbin/debootstrap ]; then
  echo "bootstrap: installing buildah and debootstrap from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq buildah debootstrap >/dev/null
fi

# A JVM and Maven: the Kafka sink's tests run a real broker from Maven Central jars.
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  echo "bootstrap: installing a JRE and Maven from Debian" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
fi
bash scripts/kafka.sh

mkdir -p .tools/bin
export GOBIN="$PWD/.tools/bin"
if [ ! -x .tools/bin/opa ] || ! .tools/bin/opa version 2>/dev/null | grep -q "^Version: ${OPA_VERSION#v}$"; then
  echo "bootstrap: go install opa ${OPA_VERSION}" >&2
  go install "github.com/open-policy-agent/opa@${OPA_VERSION}"
fi
# helm (the chart's lint and render) and k8svalidate (strict decoding of the rendered
# manifests into k8s.io/api types, tools/k8svalidate): built with Go, stamped by version.
if [ ! -x .tools/bin/helm ] || [ ! -f ".tools/bin/.helm-${HELM_VERSION}" ]; then
  echo "bootstrap: go install helm ${HELM_VERSION}" >&2
  go install "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  rm -f .tools/bin/.helm-* && touch ".tools/bin/.helm-${HELM_VERSION}"
fi
k8s_stamp=".tools/bin/.k8svalidate-$(cat tools/k8svalidate/go.mod tools/k8svalidate/go.sum tools/k8svalidate/main.go | sha256sum | cut -c1-16)"
if [ ! -x .tools/bin/k8svalidate ] || [ ! -f "$k8s_stamp" ]; then
  echo "bootstrap: go build tools/k8svalidate" >&2
  (cd tools/k8svalidate && go build -o ../../.tools/bin/k8svalidate .)
  rm -f .tools/bin/.k8svalidate-* && touch "$k8s_stamp"
fi
if [ ! -x .tools/bin/buf ] || [ "$(.tools/bin/buf --version 2>/dev/null)" != "${BUF_VERSION#v}" ]; then
  echo "bootstrap: go install buf ${BUF_VERSION}" >&2
  go install "github.com/bufbuild/buf/cmd/buf@${BUF_VERSION}"
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The runtime dependencies at the versions the image ships (requirements/image.lock, its
# pins without the hashes as constraints: an editable install cannot be hash-checked), so
# the tests run on the code the image runs; the dev extras resolve freely around them.
stamp=".venv/.installed-$(cat pyproject.toml requirements/image.lock | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: pip install -e .[dev] (runtime pins: requirements/image.lock)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  grep -E '^[A-Za-z0-9]' requirements/image.lock | cut -d' ' -f1 >.venv/constraints.txt
  .venv/bin/python -m pip install -q -c .venv/constraints.txt -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
