#!/usr/bin/env bash
# Regenerates the Python gRPC code from scaler/keda/proto/externalscaler.proto.
# The generated files are committed so that installing the package needs no
# protoc; tests/keda/test_proto_fresh.py fails when they are out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
    scaler/keda/proto/externalscaler.proto
