"""API keys in the store (scanbatch.store.keys): hashed, bound to a role, revoked at once."""

import threading
import time

import pytest

from scanbatch.errors import BadRequest, NotFound


def test_api_keys_are_hashed_and_revocable(store):
    key, token = store.keys.create("alice", "musicDirector")
    assert token.startswith("sb_") and len(token) > 40
    raw = store.db.cursor().execute("SELECT token_hash FROM api_keys").fetchall()
    assert token not in str(raw)
    auth = store.keys.authenticate(token)
    assert (auth.user_id, auth.role, auth.can_write) == ("alice", "musicDirector", True)
    assert store.keys.authenticate(token + "x") is None
    store.keys.revoke(key.id)
    assert store.keys.authenticate(token) is None
    with pytest.raises(NotFound):
        store.keys.revoke(key.id)
    with pytest.raises(BadRequest, match="Unknown role"):
        store.keys.create("bob", "admin")
    dj, _ = store.keys.create("dj1", "dj")
    assert not dj.can_write


def test_a_revoke_holds_for_every_request_that_starts_after_it_answered(store):
    """Eight threads present the key while it is revoked: once `keys.revoke` has returned, no
    lookup that starts afterwards may find the key, and the token cache must not have kept
    the row a lookup read just before the revoke committed."""
    late_hits = 0
    for _trial in range(30):
        key, token = store.keys.create("alice", "musicDirector")
        assert store.keys.authenticate(token) is not None  # cached, as between requests
        revoked_at = [None]
        stop = threading.Event()
        hits_after = []

        def user(token=token, revoked_at=revoked_at, stop=stop, hits_after=hits_after):
            while not stop.is_set():
                started = time.perf_counter()
                found = store.keys.authenticate(token)
                done_at = revoked_at[0]
                if found is not None and done_at is not None and started > done_at:
                    hits_after.append(started - done_at)

        threads = [threading.Thread(target=user) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.01)
        store.keys.revoke(key.id)
        revoked_at[0] = time.perf_counter()
        time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join()
        late_hits += len(hits_after)
        assert store.keys.authenticate(token) is None
    assert late_hits == 0
