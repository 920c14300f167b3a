#!/usr/bin/env python3
"""Regenerate tqhpc/_proto from proto/taskqueue.proto: the one command that makes the generated code.

Run it after every change to the .proto: `python scripts/generate_proto.py`. tests/test_proto_current.py runs the
same generation into a temporary folder and fails when the committed files differ, so stale code cannot land.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "tqhpc" / "_proto"
GENERATED = ("taskqueue_pb2.py", "taskqueue_pb2.pyi", "taskqueue_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Generate the protobuf and gRPC modules into out_dir; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_DIR / "taskqueue.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on proto/taskqueue.proto")
    grpc_module = out_dir / "taskqueue_pb2_grpc.py"
    # protoc writes a top-level import; the modules live inside a package, so the import must be relative.
    text = re.sub(r"^import taskqueue_pb2 as", "from . import taskqueue_pb2 as", grpc_module.read_text(), flags=re.M)
    grpc_module.write_text(text)
    return [out_dir / name for name in GENERATED]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: tqhpc/_proto)")
    written = generate(parser.parse_args().out)
    for path in written:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
