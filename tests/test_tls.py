"""TLS by default: the server's self-signed certificate, pinned through access.toml, is the only one clients trust,
the token never crosses the network in clear, and plaintext happens only with `tqhpc server --insecure`."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ServerProcess, Workers, output_of, start_server, tqhpc_command, wait_until
from test_cli import assert_one_line_error, run

from tqhpc import Client, ClientError, Status
from tqhpc._proto import taskqueue_pb2
from tqhpc.access import Access, write_access
from tqhpc.channel import CHANNEL_OPTIONS, open_channel
from tqhpc.server.tls import CERTIFICATE_FILE, KEY_FILE, load_or_make_identity

SERVICE = taskqueue_pb2.DESCRIPTOR.services_by_name["TaskQueue"]
CALL_TIMEOUT = 10.0


def _call_every_rpc(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] | None) -> dict[str, grpc.StatusCode]:
    """Each RPC of the service, found from its descriptor so that none is missed, with a valid empty request;
    the status each one ended with."""
    codes: dict[str, grpc.StatusCode] = {}
    for method in SERVICE.methods:
        kind = (
            ("stream" if method.client_streaming else "unary")
            + "_"
            + ("stream" if method.server_streaming else "unary")
        )
        call = getattr(channel, kind)(
            f"/{SERVICE.full_name}/{method.name}", request_serializer=bytes, response_deserializer=bytes
        )
        request: Any = iter([b""]) if method.client_streaming else b""
        try:
            reply = call(request, metadata=metadata, timeout=CALL_TIMEOUT)
            if method.server_streaming:
                list(reply)  # a server stream reports its status when read
            codes[method.name] = grpc.StatusCode.OK
        except grpc.RpcError as err:
            codes[method.name] = err.code()  # type: ignore[attr-defined]
    assert len(codes) == len(SERVICE.methods) >= 19
    return codes


def _server_start(state_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        tqhpc_command("server", "--state-dir", str(state_dir), "--listen", "127.0.0.1:0", *extra),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _other_certificate(tmp_path: Path) -> str:
    """A certificate made exactly as the server makes its own (same name), by another state directory."""
    other = tmp_path / "other-state"
    other.mkdir(mode=0o700)
    return load_or_make_identity(other).certificate_pem.decode()


def _access_copy(where: Path, access: Access) -> Path:
    where.mkdir(mode=0o700, exist_ok=True)
    return write_access(where, access)


# --- every RPC refuses a caller without the pinned certificate or the token -----------------------------------------


def test_every_rpc_refuses_callers_without_the_certificate_or_the_token(server: ServerProcess, tmp_path: Path) -> None:
    access = server.access
    assert access.tls
    good = open_channel(access)
    plaintext = grpc.insecure_channel(access.address, options=CHANNEL_OPTIONS)
    other_pin = open_channel(dataclasses.replace(access, certificate=_other_certificate(tmp_path)))
    try:
        for name, code in _call_every_rpc(plaintext, access.metadata).items():
            assert code == grpc.StatusCode.UNAVAILABLE, f"plaintext {name}: {code}"
        for name, code in _call_every_rpc(other_pin, access.metadata).items():
            assert code == grpc.StatusCode.UNAVAILABLE, f"another certificate {name}: {code}"
        for name, code in _call_every_rpc(good, None).items():
            assert code == grpc.StatusCode.UNAUTHENTICATED, f"no token {name}: {code}"
        for name, code in _call_every_rpc(good, (("authorization", "bearer not-the-token"),)).items():
            assert code == grpc.StatusCode.UNAUTHENTICATED, f"wrong token {name}: {code}"
    finally:
        for channel in (good, plaintext, other_pin):
            channel.close()
    # The refusals are the transport's and the token's: the right channel with the token is answered, and none of
    # the refused calls did anything.
    with Client(server.access_file) as client:
        assert client.tasks() == []
        assert client.workers() == []


def test_a_handshake_failure_is_one_clear_line(server: ServerProcess, tmp_path: Path) -> None:
    """The pinned certificate is not the server's (a server restarted with another state directory): the client
    says so, and does not go on without it."""
    forged = _access_copy(
        tmp_path / "forged", dataclasses.replace(server.access, certificate=_other_certificate(tmp_path))
    )
    assert_one_line_error(
        run("tasks", access=forged), f"does not hold the certificate pinned in the access file {forged}"
    )
    with pytest.raises(ClientError, match="does not hold the certificate pinned"), Client(forged) as client:
        client.tasks()
    # Nothing listening is not taken for a wrong certificate.
    dead = _access_copy(tmp_path / "dead", dataclasses.replace(server.access, address="127.0.0.1:1"))
    assert_one_line_error(run("tasks", access=dead), "cannot reach the tqhpc server at 127.0.0.1:1")
    # A TLS client whose address now answers in plaintext does not fall back to it.
    plain = start_server(tmp_path / "plain-state", "--insecure")
    try:
        pinned_to_plain = _access_copy(
            tmp_path / "pinned", dataclasses.replace(server.access, address=plain.access.address)
        )
        assert_one_line_error(run("tasks", access=pinned_to_plain), "does not hold the certificate pinned")
        # And a plaintext client, told so by its access file, cannot talk to a TLS server.
        plain_to_tls = _access_copy(
            tmp_path / "plain-to-tls", dataclasses.replace(plain.access, address=server.access.address)
        )
        assert_one_line_error(run("tasks", access=plain_to_tls), "is `tqhpc server --insecure` running there?")
    finally:
        plain.stop()


# --- the token on the wire ------------------------------------------------------------------------------------------


class RecordingProxy:
    """A loopback TCP proxy that keeps every byte the client sends: what anyone on the network path would see."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.sent = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while data := source.recv(65536):
                if record:
                    with self._lock:
                        self.sent += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self._listener.close()


def _captured_client_bytes(server: ServerProcess, where: Path) -> bytes:
    """What crosses the network when a client submits a task and lists the tasks through a recording proxy."""
    proxy = RecordingProxy(server.access.address)
    try:
        access_file = _access_copy(where, dataclasses.replace(server.access, address=proxy.address))
        with Client(access_file) as client:
            task_id = client.submit("echo over-the-wire")
            assert [task.task_id for task in client.tasks()] == [task_id]
        return bytes(proxy.sent)
    finally:
        proxy.close()


def test_the_token_never_crosses_the_network_in_clear(server: ServerProcess, tmp_path: Path) -> None:
    token = server.access.token.encode()
    encrypted = _captured_client_bytes(server, tmp_path / "via-proxy")
    assert len(encrypted) > 500, "the capture saw the call"
    assert token not in encrypted
    assert b"over-the-wire" not in encrypted  # the request itself is encrypted too
    # The same capture against a plaintext server sees the token: the check above can fail.
    plain = start_server(tmp_path / "plain-state", "--insecure")
    try:
        assert token != plain.access.token.encode()
        clear = _captured_client_bytes(plain, tmp_path / "via-proxy-plain")
        assert plain.access.token.encode() in clear
        assert b"over-the-wire" in clear
    finally:
        plain.stop()


class LoopbackCapture:
    """Every TCP payload to or from `port` on the loopback interface, read from an AF_PACKET socket as tcpdump
    would (root only): the real connection of a real client, with no proxy in between."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.payload = bytearray()
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))  # ETH_P_ALL
        self._socket.bind(("lo", 0))
        self._socket.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._socket.recv(65536)
            except TimeoutError:
                continue
            ip = frame[14:]  # loopback frames carry an Ethernet header of zeros
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
                continue
            tcp = ip[(ip[0] & 0x0F) * 4 : int.from_bytes(ip[2:4], "big")]
            ports = {int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")}
            if self.port in ports:
                self.payload += tcp[(tcp[12] >> 4) * 4 :]

    def stop(self) -> bytes:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()
        return bytes(self.payload)


def _packets_of_a_client_call(server: ServerProcess) -> bytes:
    capture = LoopbackCapture(int(server.access.address.rpartition(":")[2]))
    try:
        with Client(server.access_file) as client:
            client.submit("echo on-the-loopback")
    finally:
        captured = capture.stop()
    return captured


@pytest.mark.skipif(os.geteuid() != 0, reason="capturing packets on lo needs root")
def test_a_packet_capture_on_loopback_sees_no_token(server: ServerProcess, tmp_path: Path) -> None:
    encrypted = _packets_of_a_client_call(server)
    assert len(encrypted) > 500, "the capture saw the call"
    assert server.access.token.encode() not in encrypted and b"on-the-loopback" not in encrypted
    plain = start_server(tmp_path / "plain-state", "--insecure")
    try:
        clear = _packets_of_a_client_call(plain)
        assert plain.access.token.encode() in clear and b"on-the-loopback" in clear
    finally:
        plain.stop()


# --- what the server writes and keeps --------------------------------------------------------------------------------


def test_the_certificate_is_made_once_private_and_kept_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start_server(state)
    first = server.access
    server.stop()
    assert first.tls and first.certificate == (state / CERTIFICATE_FILE).read_text()
    assert (state / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert (state / "access.toml").stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in (state / "access.toml").read_bytes()
    assert "TLS, certificate pinned in access.toml" in server.log()
    assert "TLS, certificate pinned in access.toml" in (state / "server.log").read_text()
    server = start_server(state)
    try:
        assert server.access == first  # same token, port and certificate: running workers reconnect
        with Client(server.access_file) as client:
            assert client.tasks() == []
    finally:
        server.stop()


def test_insecure_is_plaintext_by_name_and_clients_follow_access_toml(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start_server(state, "--insecure")
    try:
        text = server.access_file.read_text()
        assert "tls = false" in text and "CERTIFICATE" not in text
        assert not server.access.tls
        assert "PLAINTEXT (--insecure)" in server.log()
        assert "PLAINTEXT (--insecure)" in (state / "server.log").read_text()
        with Client(server.access_file) as client:
            assert client.submit("true") == 1
    finally:
        server.stop()
    # The same state directory started again without --insecure goes back to TLS.
    server = start_server(state)
    try:
        assert server.access.tls
        with Client(server.access_file) as client:
            assert [task.task_id for task in client.tasks()] == [1]
    finally:
        server.stop()


# --- bad input: one clear line, never a traceback ---------------------------------------------------------------------

OLD_ACCESS = 'address = "127.0.0.1:1"\ntoken = "from-an-older-server"\n'


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_an_access_file_from_an_older_server_is_one_clear_line(tmp_path: Path) -> None:
    old = _private(tmp_path / "old.toml", OLD_ACCESS)
    for args in (("tasks",), ("worker",)):
        assert_one_line_error(run(*args, access=old), f"the access file {old} has no TLS certificate")
        assert_one_line_error(run(*args, access=old), "written by an older tqhpc server; restart `tqhpc server`")


def test_a_server_upgraded_in_place_keeps_its_token_and_adds_a_certificate(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    _private(state / "access.toml", OLD_ACCESS)
    server = start_server(state)
    try:
        assert server.access.token == "from-an-older-server"
        assert server.access.tls
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("transport", "expected"),
    [
        ("tls = true\n", "lacks the server's certificate, or it is damaged"),
        ('certificate = "not a certificate"\n', "lacks the server's certificate, or it is damaged"),
        ("CUT", "lacks the server's certificate, or it is damaged"),
        ('tls = "yes"\n', "says tls = 'yes': it must be true or false"),
        ("tls = false\nPIN", "says tls = false but holds a certificate"),
    ],
)
def test_a_damaged_certificate_in_access_toml_is_one_clear_line(
    server: ServerProcess, tmp_path: Path, transport: str, expected: str
) -> None:
    certificate = server.access.certificate
    assert certificate is not None
    head = f'address = "{server.access.address}"\ntoken = "{server.access.token}"\n'
    if transport == "CUT":  # a line of the certificate lost in a copy and paste
        lines = certificate.splitlines()
        transport = 'tls = true\ncertificate = """\n' + "\n".join(lines[:3] + lines[4:]) + '\n"""\n'
    transport = transport.replace("PIN", f'\ncertificate = """\n{certificate}"""\n')
    damaged = _private(tmp_path / "damaged.toml", head + transport)
    assert_one_line_error(run("tasks", access=damaged), expected)
    with pytest.raises(Exception, match="access file") as caught:
        Client(damaged)
    assert type(caught.value).__name__ == "AccessError"


def _key_problems(state: Path) -> Iterator[tuple[str, str]]:
    """Break the key or certificate of a state directory in turn; yield what the server must then say."""
    key, certificate = state / KEY_FILE, state / CERTIFICATE_FILE
    good_key, good_certificate = key.read_bytes(), certificate.read_bytes()

    def restore() -> None:
        for path, data in ((key, good_key), (certificate, good_certificate)):
            if path.is_dir():
                path.rmdir()
            path.write_bytes(data)
            path.chmod(0o600)

    key.chmod(0o644)
    yield "the server's TLS key", "is open to others (mode 0644)"
    restore()
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    yield "the server's TLS key", "is not a readable PEM private key"
    restore()
    key.unlink()
    key.mkdir()  # unreadable as a file, even by root
    yield "cannot read the server's TLS key", "delete server-key.pem and server-cert.pem"
    restore()
    certificate.unlink()
    yield "the server's TLS certificate", "is missing"
    restore()
    certificate.write_text(_other_certificate(state.parent))
    certificate.chmod(0o600)
    yield "the server's TLS certificate", "does not belong to its key"
    restore()


def test_a_broken_key_or_certificate_stops_the_server_with_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    start_server(state).stop()
    pinned = (state / "access.toml").read_text()
    for what, problem in _key_problems(state):
        result = _server_start(state)
        assert_one_line_error(result, what)
        assert problem in result.stderr, result.stderr
        assert (state / "access.toml").read_text() == pinned, "nothing was replaced"
    server = start_server(state)  # restored: the same pair is used again
    try:
        assert (state / "access.toml").read_text() == pinned
    finally:
        server.stop()


def test_a_key_that_cannot_be_written_stops_the_server_with_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / CERTIFICATE_FILE).mkdir()  # in the way of the new certificate, even for root
    result = _server_start(state)
    assert_one_line_error(result, f"cannot write the server's TLS key in {state}: Is a directory")
    assert not (state / KEY_FILE).exists() and not (state / "access.toml").exists()


def test_a_running_worker_follows_the_server_between_tls_and_plaintext_and_says_so(tmp_path: Path) -> None:
    """The worker does what access.toml says, also when its owner restarts the server with --insecure."""
    state = tmp_path / "state"
    server = start_server(state)
    pool = Workers(server, tmp_path)
    try:
        worker = pool.start("--concurrency", "1")
        with Client(server.access_file) as client:
            wait_until(client.workers, what="the worker to register")
        server.stop()
        server = start_server(state, "--insecure")
        with Client(server.access_file) as client:
            task_id = client.submit("echo in-plaintext")
            wait_until(lambda: client.task(task_id).status == Status.SUCCEEDED, timeout=60, what="the task")
        assert worker.poll() is None
        assert "the server's access file now says plaintext (tls = false, --insecure)" in output_of(worker)
    finally:
        pool.stop_all()
        server.stop()
