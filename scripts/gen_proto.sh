#!/usr/bin/env bash
# Generates the Python stubs for proto/capgate/v1 into OUT (default: service/).
#   scripts/gen_proto.sh            regenerate service/capgate/v1
#   scripts/gen_proto.sh --check    fail if the committed stubs are stale
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"

generate() {
  local out="$1"
  local wkt
  wkt=$($PY -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
  mkdir -p "$out/capgate/v1"
  $PY -m grpc_tools.protoc -I proto -I "$wkt" \
    --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
    proto/capgate/v1/*.proto
  printf '"""Generated from proto/capgate/v1 by scripts/gen_proto.sh. DO NOT EDIT."""\n' \
    > "$out/capgate/v1/__init__.py"
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  if ! diff -r -x __pycache__ "$tmp/capgate/v1" service/capgate/v1; then
    echo "gen_proto: service/capgate/v1 is stale; run 'make proto' and commit" >&2
    exit 1
  fi
  echo "gen_proto: stubs are up to date"
else
  rm -rf service/capgate/v1
  generate service
fi
