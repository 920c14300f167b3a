"""Container settings without containers running: the [apptainer] settings, the command lines they make, the
scheduler's container condition, and the size and duration parsing of the CLI."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, run

from tqhpc.cli.units import format_size, parse_duration, parse_size
from tqhpc.config import ApptainerSettings, ConfigError, load_settings
from tqhpc.store import Database, taskflow
from tqhpc.store import usage as usage_ops
from tqhpc.store import workers as worker_ops
from tqhpc.store.taskflow import NewTask
from tqhpc.worker.apptainer import MAX_INSTANCES, ApptainerRunner
from tqhpc.worker.images import ImageCache, is_uri


def test_apptainer_table_variables_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[apptainer]\nuserns = true\nbinds = ["/data", "/scratch:/s:ro"]\ncleanenv = true\n')
    settings = load_settings(ApptainerSettings, path=config)
    assert (settings.userns.lower(), settings.binds, settings.cleanenv) == ("true", ("/data", "/scratch:/s:ro"), True)
    monkeypatch.setenv("TQHPC_APPTAINER_OPTIONS", "--contain --no-home")
    assert load_settings(ApptainerSettings, path=config).options == ("--contain", "--no-home")
    assert load_settings(ApptainerSettings, {"binds": "/x"}, path=config).binds == ("/x",)
    config.write_text("[apptainer]\nbinds = [1, 2]\n")
    with pytest.raises(ConfigError, match=r"binds from .* must be a list of strings"):
        load_settings(ApptainerSettings, path=config)


def test_a_bad_userns_value_stops_the_worker_in_one_line(server) -> None:
    result = run("worker", "--access", str(server.access_file), "--apptainer-userns", "maybe")
    assert_one_line_error(result, "[apptainer] userns must be true, false or auto, not 'maybe'")


def _runner(tmp_path: Path, **settings: object) -> ApptainerRunner:
    chosen = ApptainerSettings(**{"userns": "false", "nv": "false", **settings})  # type: ignore[arg-type]
    return ApptainerRunner(chosen, tmp_path / "scratch", ImageCache(tmp_path / "images"), "t")


async def test_plain_exec_command_line(tmp_path: Path) -> None:
    runner = _runner(tmp_path, instances=False, userns="true", cleanenv=True, binds=("/data",), options=("--contain",))
    argv = await runner.command("/img.sif", "echo hi", tmp_path / "w", {"TQHPC_TASK_ID": "7", "HOME": "/root"})
    assert argv == [
        "apptainer", "--quiet", "exec", "--userns", "--cleanenv", "--bind", "/data", "--contain",
        "--env=TQHPC_TASK_ID=7", "--mount", f'"type=bind","source={tmp_path}/w","destination={tmp_path}/w"',
        "--pwd", str(tmp_path / "w"),
        "/img.sif", "sh", "-c", "echo hi",
    ]  # fmt: skip


async def test_an_instance_that_will_not_start_falls_back_to_plain_exec(tmp_path: Path) -> None:
    runner = _runner(tmp_path, executable=str(tmp_path / "no-apptainer"))
    argv = await runner.command("/img.sif", "true", tmp_path / "w", {})
    assert "instance://" not in " ".join(argv) and "/img.sif" in argv
    assert runner.no_instance == {"/img.sif"}


async def test_instances_are_per_directory_and_beyond_the_limit_tasks_run_with_plain_exec(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    scratch = tmp_path / "scratch"
    runner.instances = {("/img.sif", tmp_path / f"d{i}"): f"tqhpc-t-{i}" for i in range(MAX_INSTANCES - 1)}
    runner.instances[("/img.sif", scratch)] = "tqhpc-t-scratch"
    assert "instance://tqhpc-t-3" in await runner.command("/img.sif", "true", tmp_path / "d3", {})
    in_scratch = await runner.command("/img.sif", "true", scratch / "worker-1.2.ab" / "task-5.1", {})
    assert "instance://tqhpc-t-scratch" in in_scratch  # every scratch task shares the instance binding it all
    argv = await runner.command("/img.sif", "true", tmp_path / "ninth", {})
    assert "instance://" not in " ".join(argv) and len(runner.instances) == MAX_INSTANCES
    assert argv[argv.index("--mount") + 1] == f'"type=bind","source={tmp_path}/ninth","destination={tmp_path}/ninth"'
    assert argv[argv.index("--pwd") + 1] == str(tmp_path / "ninth")


def test_uris_are_pulled_and_paths_are_not() -> None:
    assert is_uri("docker://alpine:3") and is_uri("oras://ghcr.io/x/y:1") and is_uri("docker-archive:///t.tar")
    assert not is_uri("/images/a.sif") and not is_uri("images/sandbox/") and not is_uri("weird:thing")


def test_container_tasks_go_only_to_workers_that_can_run_them(tmp_path: Path) -> None:
    db = Database(tmp_path / "tqhpc.db")
    try:

        def register(capable: bool | None) -> int:
            def call(conn):
                worker = worker_ops.register(conn, name="w", concurrency=4, prefetch=0, hostname="h", pid=1, now=1.0)
                usage_ops.set_container_capability(conn, worker.worker_id, capable, "" if capable else "none here")
                return worker.worker_id

            return db.call(call)

        blind, able = register(False), register(True)
        db.call(
            lambda c: taskflow.insert_batch(
                c, [NewTask("a", "img.sif"), NewTask("b"), NewTask("c", "img.sif"), NewTask("d")], 2.0
            )
        )
        given = db.call(lambda c: worker_ops.ping(c, blind, 3.0)).tasks
        assert [t.command for t in given] == ["b", "d"]
        given = db.call(lambda c: worker_ops.ping(c, able, 3.0)).tasks
        assert [t.command for t in given] == ["a", "c"]
        record = db.call(lambda c: usage_ops.with_stats(c, worker_ops.list_workers(c)))[0]
        assert (record.container_capable, record.container_note) == (False, "none here")
    finally:
        db.close()


@pytest.mark.parametrize(
    ("text", "size"), [("1048576", 1 << 20), ("512M", 512 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("4k", 4096)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("1.5", 1.5), ("30s", 30), ("10m", 600), ("1h30m", 5400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", "1x", "m"])
def test_bad_durations_and_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="is not a"):
        parse_duration(text)
    with pytest.raises(ValueError, match="is not a"):
        parse_size(text)


def test_format_size() -> None:
    assert (format_size(0), format_size(512), format_size(3 << 29)) == ("", "512 B", "1.5 GiB")


def test_concurrent_pulls_make_one_pull_and_no_reader_sees_a_partial_image(tmp_path: Path) -> None:
    """Beside the real two-worker test: a fake `apptainer pull` that writes slowly, raced by eight threads with
    their own caches (as separate processes would have), checks the lock and the rename under contention."""
    fake = tmp_path / "fake-apptainer"
    count = tmp_path / "pulls"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo pull >> "{count}"\n'
        "out=$(echo \"$@\" | awk '{print $(NF-1)}')\n"  # the output path is the argument before the URI
        'for i in 1 2 3 4 5; do printf "chunk%s" "$i" >> "$out"; sleep 0.1; done\n'
    )
    fake.chmod(0o755)
    results: list[str] = []

    def pull() -> None:
        cache = ImageCache(tmp_path / "images", str(fake))
        results.append(cache.pull_once("docker://example/image:1").read_text())

    threads = [threading.Thread(target=pull) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == ["chunk1chunk2chunk3chunk4chunk5"] * 8
    assert count.read_text().split() == ["pull"]


async def test_gpu_flag_only_when_asked_or_found(tmp_path: Path) -> None:
    with_gpu = await _runner(tmp_path, instances=False, nv="true").command("/i.sif", "true", tmp_path, {})
    without = await _runner(tmp_path, instances=False, nv="false").command("/i.sif", "true", tmp_path, {})
    assert "--nv" in with_gpu and "--nv" not in without
