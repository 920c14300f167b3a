"""`tqhpc stats` and `--plot` over tasks that really ran: percentiles of what they cost, failures by kind, the sizing
they imply, and a PNG a person can paste."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from conftest import ServerProcess
from test_cli import assert_one_line_error, run

from tqhpc import Client
from tqhpc._proto import pb
from tqhpc.channel import _AuthorizedMethod
from tqhpc.cli.stats import collect
from tqhpc.stats import percentile, sbatch_time, short_duration, slurm_size, summarize

MIB = 1 << 20
PYTHON = sys.executable
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _allocate(mib: int, seconds: float = 0.4) -> str:
    """A task whose peak RSS is about `mib` MiB (bytes written, so resident) for long enough to be sampled."""
    return f"{PYTHON} -c \"import time; b = b'x' * ({mib} << 20); time.sleep({seconds})\""


@pytest.fixture
def sweep(client: Client, workers) -> list[int]:
    """Six tasks named fit that ran: four that allocate 20 to 80 MiB, one that exits 3, one killed at its timeout;
    and one task of another name."""
    ids = [client.submit(_allocate(mib), name="fit") for mib in (20, 40, 60, 80)]
    ids.append(client.submit("exit 3", name="fit"))
    ids.append(client.submit("sleep 5", name="fit", timeout=0.5))
    ids.append(client.submit(_allocate(200), name="other"))
    workers.start("--concurrency", "2")
    client.wait(ids, timeout=60, progress=False)
    return ids


def test_stats_sum_up_the_tasks_and_size_the_next_run(server: ServerProcess, client: Client, sweep, tmp_path) -> None:
    result = run("stats", "--name", "fit", "--json", access=server.access_file)
    assert result.returncode == 0, result
    stats = json.loads(result.stdout)
    assert stats["count"] == 6 and stats["statuses"] == {"S": 4, "F": 2}
    assert stats["measured"] == 6  # failed tasks with the worker's final report count too
    assert stats["failures"] == {"exit_code": 1, "timeout": 1}
    assert any("killed at their timeout" in w for w in stats["warnings"])
    peak = stats["peak_rss"]
    assert 75 * MIB <= peak["max"] <= 100 * MIB, peak  # the 80 MiB task, not the 200 MiB one of another name
    assert peak["p50"] <= peak["p95"] <= peak["p99"] <= peak["max"]
    wall = stats["wall_time"]
    assert 0.4 <= wall["max"] < 5, wall  # the killed one ran its 0.5 s timeout
    assert set(stats["cpu_efficiency"]) == {"p50", "p95", "p99", "max"}
    sizing = stats["sizing"]
    assert sizing["memory_covers"] == 1.0 and sizing["memory_bytes"] >= peak["max"] * 1.1
    assert sizing["memory"] == "256M" and sizing["time_request"] == "1m"
    assert sizing["submit_options"] == "--memory 256M --time-request 1m --timeout 1m"
    assert sizing["sbatch_options"] == "--mem=256M --cpus-per-task=1 --time=0:02:00"
    assert sizing["pool_profile"].splitlines()[:2] == ["[pools.fit]", "concurrency = 1"]

    # Four tasks at once per worker job: four times the memory, four CPUs.
    wide = json.loads(run("stats", "--name", "fit", "--json", "--concurrency", "4", access=server.access_file).stdout)
    assert wide["sizing"]["sbatch_options"] == "--mem=1G --cpus-per-task=4 --time=0:02:00"
    assert 'memory = "1G"' in wide["sizing"]["pool_profile"]

    # The status filter narrows what is counted.
    failed = json.loads(run("stats", "--name", "fit", "--status", "failed", "--json", access=server.access_file).stdout)
    assert failed["count"] == 2 and failed["failures"] == {"exit_code": 1, "timeout": 1}

    _check_the_table(server)
    _check_an_older_server(server, stats)
    _check_the_plot(server, tmp_path)


def _check_the_table(server: ServerProcess) -> None:
    human = run("stats", "--name", "fit", access=server.access_file)
    assert human.returncode == 0, human
    text = human.stdout
    assert text.startswith("6 tasks: 4 succeeded, 2 failed; 6 measured")
    header = next(line for line in text.splitlines() if "P50" in line)
    assert header.split() == ["P50", "P95", "P99", "MAX"]
    for label in ("wall time", "CPU time", "CPU efficiency", "peak RSS"):
        assert any(line.startswith(label) for line in text.splitlines()), label
    assert "failures: 1 exit_code, 1 timeout" in text
    assert "--memory 256M covers 100% of these tasks' peak RSS" in text
    assert "tqhpc submit --memory 256M --time-request 1m --timeout 1m ..." in text
    assert "[pools.fit]" in text


def _check_an_older_server(server: ServerProcess, stats: dict) -> None:
    """A server without TaskStatsPages (an older one) answers UNIMPLEMENTED: the same figures come from the listing."""
    with Client(server.access_file) as columns_client:
        from_columns = summarize(collect(columns_client, None, "fit")).to_dict("fit")
    with Client(server.access_file) as older:
        unknown = older._channel.unary_stream(
            "/taskqueue.TaskQueue/TaskStatsPagesUnknownHere",
            request_serializer=pb.ListTasksRequest.SerializeToString,
            response_deserializer=pb.TaskStatsPage.FromString,
        )
        older._stub.TaskStatsPages = _AuthorizedMethod(unknown, older.access.metadata)
        from_listing = summarize(collect(older, None, "fit")).to_dict("fit")
    assert from_listing == from_columns == stats


def _check_the_plot(server: ServerProcess, tmp_path: Path) -> None:
    plot = tmp_path / "stats.png"
    drawn = run("stats", "--name", "fit", "--plot", str(plot), access=server.access_file)
    assert drawn.returncode == 0, drawn
    assert f"plot: {plot}" in drawn.stdout
    data = plot.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 20_000
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1300, 400)
    from matplotlib import image

    pixels = image.imread(plot)
    assert pixels.shape[:2] == (400, 1300)
    assert pixels[..., :3].std() > 0.05  # drawn on, not a blank canvas


def test_stats_of_no_task_say_there_is_nothing_to_size(server: ServerProcess, client: Client) -> None:
    client.submit("true", name="queued")  # pending: counted, not measured
    human = run("stats", "--name", "queued", access=server.access_file)
    assert human.returncode == 0, human
    assert human.stdout.startswith("1 task: 1 pending; 0 measured")
    assert "nothing to size" in human.stdout
    machine = json.loads(run("stats", "--name", "nobody", "--json", access=server.access_file).stdout)
    assert machine["count"] == 0 and machine["sizing"] is None and machine["wall_time"] is None


def test_stats_refuse_a_bad_status_in_one_line(server: ServerProcess) -> None:
    assert_one_line_error(run("stats", "--status", "Q", access=server.access_file), "--status", code=2)


def test_a_plot_that_cannot_be_written_is_one_line(server: ServerProcess, tmp_path: Path) -> None:
    target = tmp_path / "no such directory" / "stats.png"
    result = run("stats", "--plot", str(target), access=server.access_file)
    assert_one_line_error(result, f"cannot write the plot to {target}: No such file or directory")


def test_stats_without_a_server_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "access.toml"
    assert_one_line_error(run("stats", access=missing), "tqhpc: error:")


def test_plot_without_matplotlib_says_how_to_install_it(server: ServerProcess, tmp_path: Path) -> None:
    """An interpreter in which `import matplotlib` fails, as where the extra is not installed."""
    plot = tmp_path / "stats.png"
    blocked = (
        "import sys; sys.modules['matplotlib'] = None; sys.argv = ['tqhpc'] + sys.argv[1:]; "
        "from tqhpc.cli import main; main()"
    )
    command = [PYTHON, "-c", blocked, "stats", "--plot", str(plot)]
    env = dict(os.environ, TQHPC_ACCESS=str(server.access_file))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert_one_line_error(result, "pip install 'tqhpc[plot]'")
    assert result.stderr.startswith("tqhpc: error: --plot needs matplotlib")
    assert not plot.exists()


def test_percentiles_are_nearest_rank_and_sizes_read_as_slurm_writes_them() -> None:
    values = list(range(1, 101))
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([7.0], 99) == 7.0
    assert [slurm_size(s) for s in (256 * MIB, 1024 * MIB, 1536 * MIB)] == ["256M", "1G", "1536M"]
    assert [short_duration(s) for s in (45, 60, 5400, 3661)] == ["45s", "1m", "1h30m", "1h1m1s"]
    assert [sbatch_time(s) for s in (120, 3600, 90000)] == ["0:02:00", "1:00:00", "1-01:00:00"]


def test_task_stats_pages_come_in_columns_page_by_page(client: Client, stub) -> None:
    ids = client.submit_many(["true"] * 7)
    client.cancel(ids[:2])
    pages = list(client.task_stats_pages(page_size=3))
    assert [p.last for p in pages] == [False, False, True]
    assert [p.last_task_id for p in pages] == [ids[2], ids[5], ids[6]]
    assert "".join(p.statuses for p in pages) == "XXPPPPP"
    first = pages[0]
    assert list(first.slots) == [1, 1, 1] and list(first.final) == [False] * 3  # never ran: no usage
    assert list(first.wall_times) == [0.0] * 3 and first.ended_at[0] > 0 and first.ended_at[2] == 0
    with pytest.raises(grpc.RpcError) as refused:
        list(stub.TaskStatsPages(pb.ListTasksRequest(page_size=50_001)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as refused:
        list(stub.TaskStatsPages(pb.ListTasksRequest(status_filter="Q")))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
