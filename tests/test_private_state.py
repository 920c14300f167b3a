"""The token in access.toml lets anyone submit as its owner: a state directory others can write, or an access file
others can read, is refused (by the server, the CLI, the Python client and workers) with the command that fixes it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import start_server, tqhpc_command, wait_until
from test_cli import assert_one_line_error, run

from tqhpc import Client
from tqhpc.access import AccessError


def _server_start(state_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        tqhpc_command("server", "--state-dir", str(state_dir), "--listen", "127.0.0.1:0"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_server_refuses_a_state_directory_others_can_write(tmp_path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    assert_one_line_error(_server_start(state), "is writable by others (mode 0777)", 1)
    assert_one_line_error(_server_start(state), f"run `chmod 700 {state}`", 1)
    assert not (state / "access.toml").exists()
    state.chmod(0o700)
    server = start_server(state)
    try:
        assert (state / "access.toml").stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()


def test_server_refuses_an_access_file_others_can_read(tmp_path) -> None:
    state = tmp_path / "state"
    server = start_server(state)
    token = server.access.token
    server.stop()
    access = state / "access.toml"
    access.chmod(0o644)
    result = _server_start(state)
    assert_one_line_error(result, f"the access file {access} is open to others (mode 0644)", 1)
    assert f"run `chmod 600 {access}`" in result.stderr
    access.chmod(0o600)
    server = start_server(state)
    try:
        assert server.access.token == token
    finally:
        server.stop()


def test_clients_and_workers_refuse_an_access_file_others_can_read(server, tmp_path) -> None:
    copy = tmp_path / "shared-access.toml"
    shutil.copy(server.access_file, copy)
    copy.chmod(0o640)
    for args in (("tasks",), ("submit", "true"), ("worker",)):
        result = run(*args, access=copy)
        assert_one_line_error(result, f"the access file {copy} is open to others (mode 0640)", 1)
        assert f"run `chmod 600 {copy}`" in result.stderr
    with pytest.raises(AccessError, match="chmod 600"):
        Client(copy)
    copy.chmod(0o600)
    assert run("submit", "true", access=copy).stdout.strip() == "1"
    worker = subprocess.Popen(tqhpc_command("worker", "--access", str(copy), "--ping-interval", "0.2"))
    try:
        with Client(copy) as client:
            wait_until(client.workers, what="the worker to register")
    finally:
        worker.terminate()
        worker.wait(20)


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a directory to another user")
def test_server_refuses_a_state_directory_of_another_user(tmp_path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    assert_one_line_error(_server_start(state), f"the state directory {state} belongs to user id 65534, not to you", 1)
