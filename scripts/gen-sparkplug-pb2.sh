#!/usr/bin/env bash
# Regenerate ingest/sources/sparkplug_b_pb2.py (+ .pyi) from ingest/sources/sparkplug_b.proto.
#
# protoc comes from grpcio-tools in a throw-away venv (not a project dependency). It must be the
# protoc of the oldest protobuf runtime the project allows (pyproject: protobuf>=5.26): the
# runtime refuses gencode newer than itself and takes older gencode. grpcio-tools 1.64.1 bundles
# libprotoc 26.1 (runtime 5.26).
#
#   bash scripts/gen-sparkplug-pb2.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "grpcio-tools==1.64.1"
"$venv/bin/python" -m grpc_tools.protoc --proto_path=. \
    --python_out=. --pyi_out=. ingest/sources/sparkplug_b.proto
echo "generated: ingest/sources/sparkplug_b_pb2.py ingest/sources/sparkplug_b_pb2.pyi"
