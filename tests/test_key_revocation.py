"""A revoked key stops working for every request that starts after the revoke answered, while
concurrent users keep presenting it (a real server on 127.0.0.1, its 8 request threads)."""

import threading
import time

import pytest
import requests

from tests.webutil import bearer

pytestmark = pytest.mark.slow


def test_a_revoke_holds_at_once_for_concurrent_users_of_the_key(live_server, server_tokens):
    manager = bearer(server_tokens["manager"])
    late = []
    for _trial in range(5):
        r = requests.post(
            f"{live_server.url}/admin/keys",
            json={"user": "shared", "role": "dj"},
            headers=manager,
            timeout=10,
        )
        assert r.status_code == 201, r.text
        key_id, token = r.json()["id"], r.json()["token"]
        revoked = []  # the moment DELETE answered
        stop = threading.Event()

        def user(token=token, revoked=revoked, stop=stop):
            with requests.Session() as s:
                while not stop.is_set():
                    started = time.perf_counter()
                    r = s.get(f"{live_server.url}/library/scan/batch", headers=bearer(token))
                    if r.status_code == 200 and revoked and started > revoked[0]:
                        late.append(r.status_code)

        users = [threading.Thread(target=user) for _ in range(8)]
        for t in users:
            t.start()
        time.sleep(0.2)
        r = requests.delete(f"{live_server.url}/admin/keys/{key_id}", headers=manager, timeout=10)
        revoked.append(time.perf_counter())
        assert r.status_code == 200, r.text
        time.sleep(0.3)
        stop.set()
        for t in users:
            t.join()
        r = requests.get(f"{live_server.url}/library/scan/batch", headers=bearer(token), timeout=10)
        assert r.status_code == 401
    assert late == []
