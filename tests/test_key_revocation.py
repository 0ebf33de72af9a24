"""A revoked key stops working for every request that starts after the revoke answered, while
concurrent users keep presenting it (a real server on 127.0.0.1, its 8 request threads)."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from scanbatch.testing.servers import bearer

pytestmark = pytest.mark.slow


def served_after_a_revoke(url: str, manager: dict[str, str], users: int = 8) -> list[int]:
    """A new key used by `users` threads while a stationManager revokes it: the requests that
    started after the DELETE answered and were still served (there must be none)."""
    r = requests.post(
        f"{url}/admin/keys", json={"user": "shared", "role": "dj"}, headers=manager, timeout=10
    )
    assert r.status_code == 201, r.text
    key_id, token = r.json()["id"], r.json()["token"]
    revoked: list[float] = []  # the moment DELETE answered
    late: list[int] = []
    stop = threading.Event()

    def user() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                started = time.perf_counter()
                r = s.get(f"{url}/library/scan/batch", headers=bearer(token))
                if r.status_code == 200 and revoked and started > revoked[0]:
                    late.append(r.status_code)

    threads = [threading.Thread(target=user) for _ in range(users)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    r = requests.delete(f"{url}/admin/keys/{key_id}", headers=manager, timeout=10)
    revoked.append(time.perf_counter())
    assert r.status_code == 200, r.text
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    r = requests.get(f"{url}/library/scan/batch", headers=bearer(token), timeout=10)
    assert r.status_code == 401
    return late


def test_a_revoke_holds_at_once_for_concurrent_users_of_the_key(live_server, server_tokens):
    manager = bearer(server_tokens["manager"])
    assert [served_after_a_revoke(live_server.url, manager) for _ in range(5)] == [[]] * 5
