"""The generated code in tqhpc/_proto must be what scripts/generate_proto.py makes from proto/taskqueue.proto."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("generate_proto", ROOT / "scripts" / "generate_proto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh = _generator().generate(tmp_path)
    for path in fresh:
        committed = ROOT / "tqhpc" / "_proto" / path.name
        assert committed.read_text() == path.read_text(), (
            f"tqhpc/_proto/{path.name} is stale: run `python scripts/generate_proto.py` and commit the result"
        )


def test_seed_fields_keep_their_numbers() -> None:
    """A spot check of the contract: seed fields keep the numbers the seed's order gives them."""
    from tqhpc._proto import pb

    assert pb.Task.DESCRIPTOR.fields_by_name["status"].number == 4
    assert pb.WorkerRequest.DESCRIPTOR.fields_by_name["region_id"].number == 8
    assert pb.WorkerInfo.DESCRIPTOR.fields_by_name["concurrency"].has_presence
    assert pb.ListTasksRequest.DESCRIPTOR.fields_by_name["status_filter"].has_presence
    assert pb.DESCRIPTOR.package == "taskqueue"
    assert "TaskQueue" in pb.DESCRIPTOR.services_by_name
