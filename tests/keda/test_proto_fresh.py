"""The committed gRPC code is what scripts/gen_proto.sh generates from the .proto today."""

from __future__ import annotations

import shutil
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("externalscaler_pb2.py", "externalscaler_pb2.pyi", "externalscaler_pb2_grpc.py")


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    (tmp_path / "scaler/keda/proto").mkdir(parents=True)
    shutil.copy(ROOT / "scaler/keda/proto/externalscaler.proto", tmp_path / "scaler/keda/proto")
    code = protoc.main(["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}",
                        f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                        str(tmp_path / "scaler/keda/proto/externalscaler.proto")])
    assert code == 0
    for name in GENERATED:
        fresh = (tmp_path / "scaler/keda/proto" / name).read_text()
        committed = (ROOT / "scaler/keda/proto" / name).read_text()
        assert fresh == committed, f"{name} is stale: run scripts/gen_proto.sh"
