"""The real server (waitress on 127.0.0.1) against clients that misbehave at the socket level."""

import json
import socket
import time

import pytest
import requests

from tests.server_process import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("serve") / "data"
    data.mkdir()
    srv = ServerProcess(data, SCANBATCH_HTTP_CHANNEL_TIMEOUT="2").start()
    yield srv
    srv.stop()


def _address(url):
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _read_response(sock):
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("Content-Length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_idle_sockets_do_not_lock_out_other_clients_and_are_closed(server):
    idle = []
    try:
        for _ in range(200):
            s = socket.create_connection(_address(server.url), timeout=10)
            s.sendall(
                b"POST /library/scan/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\npart"
            )
            idle.append(s)
        r = requests.get(f"{server.url}/healthz", timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        # Each stalled socket is closed by the server (channel timeout 2 s here): recv sees
        # the end of the stream instead of waiting forever.
        for s in idle:
            s.settimeout(30)
            assert s.recv(1024) == b""
    finally:
        for s in idle:
            s.close()


def test_an_over_limit_content_length_gets_the_json_error_before_the_body(server):
    with socket.create_connection(_address(server.url), timeout=10) as s:
        s.sendall(
            b"POST /library/scan/batch HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 629145600\r\n\r\n"
        )
        status, headers, body = _read_response(s)
    assert status == 413
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)
    assert error["status"] == 413 and error["message"].startswith("Request too large")


def test_a_malformed_request_line_gets_the_json_error(server):
    with socket.create_connection(_address(server.url), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        status, headers, body = _read_response(s)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["status"] == 400


def test_the_runtime_file_lets_local_commands_reach_the_server(server):
    info = json.loads((server.data_dir / "server.json").read_text())
    assert info["url"] == server.url
    assert (server.data_dir / "server.json").stat().st_mode & 0o077 == 0
    r = requests.get(
        f"{server.url}/admin/keys",
        headers={"Authorization": f"Bearer {info['token']}"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json() == {"keys": []}


def test_staging_left_by_a_kill_9_is_gone_after_restart(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    srv = ServerProcess(data).start()
    try:
        # A request that dies mid-upload leaves its staging folder; simulate the moment of the
        # kill by creating one while the server runs, then kill -9.
        staging = data / "jobs" / ".incoming-abandoned"
        staging.mkdir(parents=True)
        (staging / "00").write_bytes(b"\0" * 4096)
        srv.kill()
        srv.log.close()
        srv = ServerProcess(data).start()
        deadline = time.monotonic() + 30
        while staging.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not staging.exists()
    finally:
        srv.stop()
