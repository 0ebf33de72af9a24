"""The real server (waitress on 127.0.0.1) against clients that misbehave at the socket level."""

import io
import json
import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest
import requests

from scanbatch.names import FIELDS
from scanbatch.testing.servers import ServerProcess, bearer
from scanbatch.web.uploads import (
    MAX_JSON_BYTES,
    MAX_REQUEST_BYTES,
    UPLOAD_ROUTES,
    json_too_large_message,
    request_too_large_message,
)
from tests.webutil import batch_files

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    data = root / "data"
    data.mkdir()
    # Its own temporary folder, so that the files waitress spools bodies into can be told
    # apart among the server's open descriptors.
    (root / "tmp").mkdir()
    srv = ServerProcess(data, SCANBATCH_HTTP_CHANNEL_TIMEOUT="2", TMPDIR=str(root / "tmp")).start()
    srv.tmp_dir = root / "tmp"
    yield srv
    srv.stop()


def _create_keys(srv, *roles):
    """A token per role, made through the server with its local admin token."""
    admin = json.loads((srv.data_dir / "server.json").read_text())["token"]
    out = {}
    for role in roles:
        r = requests.post(
            f"{srv.url}/admin/keys",
            json={"user": f"user-{role}", "role": role},
            headers=bearer(admin),
            timeout=10,
        )
        assert r.status_code == 201, r.text
        out[role] = r.json()["token"]
    return out


@pytest.fixture(scope="module")
def tokens(server):
    return _create_keys(server, "musicDirector", "dj")


def _temp_files(srv):
    """The temporary files the server process has open (waitress spools a body past 512 KiB
    into one: tempfile.TemporaryFile, unlinked, so only its descriptor shows it)."""
    fds = f"/proc/{srv.proc.pid}/fd"
    found = []
    for fd in os.listdir(fds):
        try:
            target = os.readlink(f"{fds}/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(srv.tmp_dir)):
            found.append(target)
    return found


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


def test_idle_sockets_do_not_lock_out_other_clients_and_are_closed(server, tokens):
    idle = []
    auth = f"Authorization: Bearer {tokens['musicDirector']}\r\n".encode()
    try:
        for _ in range(200):
            s = socket.create_connection(_address(server.url), timeout=10)
            s.sendall(
                b"POST /library/scan/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                + auth
                + b"\r\npart"
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


def test_an_over_limit_content_length_gets_the_json_error_before_the_body(server, tokens):
    with socket.create_connection(_address(server.url), timeout=10) as s:
        s.sendall(
            b"POST /library/scan/batch HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            + f"Authorization: Bearer {tokens['musicDirector']}\r\n".encode()
            + b"Content-Length: 629145600\r\n\r\n"
        )
        status, headers, body = _read_response(s)
    assert status == 413
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)
    assert error == {"status": 413, "message": request_too_large_message(MAX_REQUEST_BYTES)}


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
    assert r.status_code == 200
    assert {k["userId"] for k in r.json()["keys"]} <= {"user-musicDirector", "user-dj"}


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


# Refused from the headers (issue 18, row 5): before this, waitress read (and spooled to a
# temporary file) the whole body before the app said 401.


def _head(length=200 * MiB, token=None, method="POST", path="/library/scan/batch", extra=""):
    lines = [f"{method} {path} HTTP/1.1", "Host: x"]
    lines.append("Content-Type: multipart/form-data; boundary=x")
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def _answer_to_headers(srv, head, body=b""):
    """Send `head` (and `body`), then nothing: (status, headers, body, seconds from the last
    header byte to the answer's first byte, the open socket)."""
    s = socket.create_connection(_address(srv.url), timeout=10)
    s.sendall(head + body)
    sent = time.monotonic()
    s.settimeout(5)
    first = s.recv(1, socket.MSG_PEEK)
    latency = time.monotonic() - sent
    assert first, "the server closed without an answer"
    status, headers, body = _read_response(s)
    return status, headers, json.loads(body), latency, s


def _app_401(srv):
    """What the app itself answers a request without a token."""
    r = requests.get(f"{srv.url}/library/scan/batch", timeout=10)
    assert r.status_code == 401
    return r.json()


def _closed_after_answer(s):
    """The connection ends with a FIN (not a reset) once the answer is read."""
    s.settimeout(5)
    try:
        return s.recv(1) == b""
    finally:
        s.close()


def test_an_unauthenticated_upload_is_refused_from_its_headers_and_never_stored(server):
    before = _temp_files(server)
    status, headers, error, latency, s = _answer_to_headers(server, _head(200 * MiB))
    try:
        assert status == 401 and latency < 0.1, latency
        assert headers["Content-Type"] == "application/json"
        assert error == _app_401(server)  # the app's one shape and its very message
        # What the client still sends is dropped: past waitress's 512 KiB in memory, a stored
        # body would be in a temporary file by now.
        s.sendall(b"\0" * (3 * MiB))
        time.sleep(0.3)
        assert _temp_files(server) == before
    finally:
        assert _closed_after_answer(s)


def test_an_upload_over_the_limit_with_a_valid_key_is_refused_from_its_headers(server, tokens):
    token = tokens["musicDirector"]
    status, _, error, latency, s = _answer_to_headers(server, _head(MAX_REQUEST_BYTES + 1, token))
    assert (status, error) == (
        413,
        {"status": 413, "message": request_too_large_message(MAX_REQUEST_BYTES)},
    )
    assert latency < 0.1, latency
    assert _closed_after_answer(s)
    # A JSON route has its own small limit, also answered from the headers.
    review = f"/library/scan/batch/{'0' * 8}-0000-4000-8000-{'0' * 12}/items/0/review"
    head = _head(MiB, token, method="PUT", path=review)
    status, _, error, latency, s = _answer_to_headers(server, head)
    assert (status, error) == (
        413,
        {"status": 413, "message": json_too_large_message(MAX_JSON_BYTES)},
    )
    assert latency < 0.1, latency
    assert _closed_after_answer(s)


def test_a_read_only_key_may_not_upload_and_is_told_from_the_headers(server, tokens):
    status, _, error, latency, s = _answer_to_headers(server, _head(200 * MiB, tokens["dj"]))
    assert status == 403 and latency < 0.1, latency
    assert error["message"].startswith("Role 'dj' may only read")
    assert _closed_after_answer(s)


def test_a_revoked_or_unknown_token_is_refused_from_the_headers(server):
    status, _, error, latency, s = _answer_to_headers(server, _head(200 * MiB, "sb_not-a-key"))
    assert status == 401 and latency < 0.1, latency
    assert error["message"].startswith("Invalid or revoked API token")
    assert _closed_after_answer(s)


def test_an_accepted_upload_is_still_read_and_answered(server, tokens):
    manifest, files = batch_files(2)
    r = requests.post(
        f"{server.url}/library/scan/batch",
        data={"manifest": manifest},
        files=[("images", f) for f in files],
        headers=bearer(tokens["musicDirector"]),
        timeout=30,
    )
    assert r.status_code == 202, r.text


def test_expect_100_continue_is_answered_with_the_refusal_or_the_go_ahead(server, tokens):
    expect = "Expect: 100-continue\r\n"
    status, _, _, latency, s = _answer_to_headers(server, _head(5 * MiB, extra=expect))
    assert status == 401 and latency < 0.1  # and no "100 Continue" before it
    assert _closed_after_answer(s)
    boundary = "x"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="manifest"\r\n\r\n'
            '{"items": [{"imageCount": 1, "photoTypes": ["front"]}]}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + batch_files(1)[1][0][1]
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = _head(len(body), tokens["musicDirector"], extra=expect)
    with socket.create_connection(_address(server.url), timeout=10) as s:
        s.sendall(head)
        assert s.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        status, _, answer = _read_response(s)
    assert status == 202, answer


def test_an_unauthenticated_chunked_upload_is_refused_and_a_chunked_json_body_is_capped(
    server, tokens
):
    status, _, error, latency, s = _answer_to_headers(server, _head(None), b"10000\r\n")
    assert (status, error, latency < 0.1) == (401, _app_401(server), True)
    assert _closed_after_answer(s)
    # Chunked, so no length to refuse from: the JSON limit is counted while reading.
    review = f"/library/scan/batch/{'0' * 8}-0000-4000-8000-{'0' * 12}/items/0/review"
    head = _head(None, tokens["musicDirector"], method="PUT", path=review)
    chunk = b"%x\r\n%s\r\n" % (32 * 1024, b" " * 32 * 1024)
    with socket.create_connection(_address(server.url), timeout=10) as s:
        s.sendall(head)
        for _ in range(4):  # 128 KiB
            try:
                s.sendall(chunk)
            except OSError:
                break
        status, _, body = _read_response(s)
    assert (status, json.loads(body)["message"]) == (413, json_too_large_message(MAX_JSON_BYTES))


def test_a_refusal_keeps_the_order_of_pipelined_requests_then_closes(server):
    with socket.create_connection(_address(server.url), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + _head(50 * MiB) + b"\0" * 4096)
        received = b""
        while chunk := s.recv(65536):  # to the end: the server closes after the refusal
            received += chunk
    answers = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        length = int(next(h for h in head.split(b"\r\n") if h.startswith(b"Content-Length"))[16:])
        answers.append((int(head.split()[1]), json.loads(rest[:length])))
        received = rest[length:]
    assert [status for status, _ in answers] == [200, 401]
    assert "queuedJobs" in answers[0][1] and answers[1][1] == _app_401(server)


def test_clients_that_send_the_whole_body_first_get_the_answer_and_nothing_is_spooled(server):
    """requests (like most clients) sends all of a body before reading: each gets the 401,
    not a reset, and none of the 12 bodies of 4 MiB at once touches the disk."""
    before = _temp_files(server)
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append(len(_temp_files(server)))
            time.sleep(0.005)

    def post():
        return requests.post(
            f"{server.url}/library/scan/batch",
            data=b"\0" * (4 * MiB),
            headers={"Content-Type": "multipart/form-data; boundary=x"},
            timeout=30,
        )

    watcher = threading.Thread(target=watch)
    watcher.start()
    results = []
    try:
        posters = [threading.Thread(target=lambda: results.append(post())) for _ in range(12)]
        for t in posters:
            t.start()
        for t in posters:
            t.join()
    finally:
        done.set()
        watcher.join()
    assert [r.status_code for r in results] == [401] * 12
    assert max(seen) == len(before)


def test_every_multipart_route_is_an_upload_route_of_the_gate():
    import scanbatch.web  # noqa: F401  (its blueprints document their routes on import)
    from scanbatch.web.openapi import OPERATIONS

    multipart = {(op.method.upper(), op.path) for op in OPERATIONS if op.multipart}
    assert multipart == set(UPLOAD_ROUTES)


# Slow readers (issue 18, row 6): eight clients that stopped reading an export held all eight
# threads for good, and /healthz with them.

SEND_TIMEOUT = 3


def _noise_png(seed):
    import random

    from PIL import Image

    size = (600, 600)  # about 1 MiB that no compression shrinks
    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buf = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A server whose send buffer is small (so a few MiB of export fill it) and whose send
    timeout is short, with an export of six photos of 1 MiB: (server, token, job id, size)."""
    data = tmp_path_factory.mktemp("stall") / "data"
    data.mkdir()
    srv = ServerProcess(
        data,
        SCANBATCH_HTTP_SEND_TIMEOUT=str(SEND_TIMEOUT),
        SCANBATCH_HTTP_SEND_BUFFER=str(256 * 1024),
    ).start()
    try:
        token = _create_keys(srv, "musicDirector")["musicDirector"]
        items = [{"imageCount": 2, "photoTypes": ["front", "back"]}] * 3
        r = requests.post(
            f"{srv.url}/library/scan/batch",
            data={"manifest": json.dumps({"items": items})},
            files=[("images", (f"p{i}.png", _noise_png(i))) for i in range(6)],
            headers=bearer(token),
            timeout=60,
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        assert srv.wait_finished(job_id, token)["status"] == "completed"
        truth = dict.fromkeys(FIELDS)
        for i in range(3):
            r = requests.put(
                f"{srv.url}/library/scan/batch/{job_id}/items/{i}/review",
                json={"fields": truth, "matchedAlbumId": None, "note": None},
                headers=bearer(token),
                timeout=10,
            )
            assert r.status_code == 200, r.text
        whole = _export(srv, token)
        assert whole.status_code == 200 and len(whole.content) > 6 * MiB
        yield srv, token, job_id, len(whole.content)
    finally:
        srv.stop()


def _export(srv, token):
    return requests.get(f"{srv.url}/library/scan/review/dataset", headers=bearer(token), timeout=30)


def _stalled_export(srv, token):
    """A client that asks for the export, reads its first bytes, and stops reading."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window
    s.settimeout(10)
    s.connect(_address(srv.url))
    s.sendall(
        f"GET /library/scan/review/dataset HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return s, s.recv(64)


def test_clients_that_stall_exports_never_take_the_server(exports):
    srv, token, job_id, size = exports
    assert requests.get(f"{srv.url}/healthz", timeout=10).status_code == 200  # the client warm
    stalled = [_stalled_export(srv, token) for _ in range(8)]
    stalled_at = time.monotonic()
    try:
        time.sleep(0.5)  # the streams fill their buffers: their threads now wait
        # Polls and /healthz keep answering while the readers stall.
        while time.monotonic() - stalled_at < SEND_TIMEOUT - 0.5:
            for path in ("/healthz", f"/library/scan/batch/{job_id}"):
                started = time.monotonic()
                r = requests.get(f"{srv.url}{path}", headers=bearer(token), timeout=10)
                assert r.status_code == 200 and time.monotonic() - started < 1, path
            time.sleep(0.2)
        # Two exports stream at once; the others were told to come back.
        statuses = sorted(int(first.split()[1]) for _, first in stalled)
        assert statuses == [200] * 2 + [503] * 6
        # Past the send timeout the stalled streams are reset, not left waiting forever: what
        # was sent before is all there is.
        time.sleep(stalled_at + SEND_TIMEOUT + 2.5 - time.monotonic())
        for s, first in stalled:
            if int(first.split()[1]) != 200:
                continue
            got = len(first)
            try:
                while chunk := s.recv(65536):
                    got += len(chunk)
            except ConnectionResetError:
                pass
            assert got < size // 2
    finally:
        for s, _ in stalled:
            s.close()
    # Their threads and export slots are free again.
    again = _export(srv, token)
    assert again.status_code == 200 and len(again.content) > size - 1024
    with zipfile.ZipFile(io.BytesIO(again.content)) as whole:
        assert whole.testzip() is None and len(whole.namelist()) == 6 + 3


def test_connections_past_descriptor_1023_leave_the_server_answering(tmp_path):
    """1000 connections (the default limit) beside the store, kernels' sockets, photos being
    sent and uploads being staged pass descriptor 1023, which select() cannot watch: the
    server's loop ended with a ValueError. Here the limit is raised to get there directly."""
    data = tmp_path / "data"
    data.mkdir()
    srv = ServerProcess(data, SCANBATCH_HTTP_CONNECTION_LIMIT="1200").start()
    opened = []
    try:
        for _ in range(1100):
            opened.append(socket.create_connection(_address(srv.url), timeout=10))
        deadline = time.monotonic() + 10
        while True:
            assert srv.proc.poll() is None, "the server ended (see its server.log)"
            if max(int(fd) for fd in os.listdir(f"/proc/{srv.proc.pid}/fd")) >= 1030:
                break
            assert time.monotonic() < deadline, "the server did not accept the connections"
            time.sleep(0.1)
        r = requests.get(f"{srv.url}/healthz", timeout=10)
        assert r.status_code == 200
    finally:
        for s in opened:
            s.close()
        srv.stop()


def test_a_low_open_file_limit_is_raised_to_fit_the_connection_limit(tmp_path):
    """With the common soft limit of 1024 open files, 1000 connections and the app's own
    files did not fit: accept() failed with EMFILE in a busy loop, and so did every file the
    app opened."""
    import resource

    data = tmp_path / "data"
    data.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # inherited by the server
    try:
        srv = ServerProcess(data).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        limits = (Path(f"/proc/{srv.proc.pid}/limits")).read_text()
        line = next(li for li in limits.splitlines() if li.startswith("Max open files"))
        assert int(line.split()[3]) >= 1000 + 256
    finally:
        srv.stop()
