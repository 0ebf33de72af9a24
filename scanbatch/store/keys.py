"""API keys in the store (`api_keys`): issued by `scanbatch keys create`, stored hashed, each
bound to a user and a role. Tokens are looked up on every request, so the keys in use are kept
in memory; this process is the store's only writer, so it knows when they go stale (a revoke)."""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

from scanbatch.errors import BadRequest, NotFound
from scanbatch.names import WRITE_ROLES, Role
from scanbatch.store.db import Database, utcnow

_COLUMNS = "id, user_id, role, created_at, revoked_at"


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 cannot be brute-forced; no salt needed.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    user_id: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    ticket: bool = False  # an upload ticket's stand-in (scanbatch.tickets), not a stored key

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_hash: dict[str, ApiKey] = {}  # the valid keys presented so far
        # Bumped by every revoke after its commit: a lookup keeps the row it read only if no
        # revoke finished meanwhile (it may have read the row before the revoke committed).
        self._lock = threading.Lock()
        self._revokes = 0

    def create(self, user_id: str, role: str) -> tuple[ApiKey, str]:
        """A new key; the token is returned once and only its hash is stored."""
        if role not in set(Role):
            raise BadRequest(f"Unknown role '{role}': use one of {', '.join(Role)}")
        if not user_id.strip():
            raise BadRequest("user must not be empty")
        key_id = "k_" + secrets.token_hex(4)
        token = f"sb_{key_id[2:]}_{secrets.token_urlsafe(32)}"
        now = utcnow()
        with self.db.write() as cur:
            cur.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                [key_id, user_id, role, hash_token(token), now],
            )
        return ApiKey(key_id, user_id, role, now, None), token

    def authenticate(self, token: str) -> ApiKey | None:
        """The valid (unrevoked) key of `token`, or None."""
        token_hash = hash_token(token)
        key = self._by_hash.get(token_hash)
        if key is not None:
            return key
        revokes = self._revokes
        with self.db.read() as cur:
            row = cur.execute(
                f"SELECT {_COLUMNS} FROM api_keys WHERE token_hash = ? AND revoked_at IS NULL",
                [token_hash],
            ).fetchone()
        if row is None:  # unknown tokens are not cached: that cache would grow without bound
            return None
        key = ApiKey(*row)
        with self._lock:
            if self._revokes == revokes:
                self._by_hash[token_hash] = key
        return key

    def is_active(self, key_id: str) -> bool:
        """Whether the key `key_id` is stored and not revoked (an upload ticket lives only as
        long as the key that minted it)."""
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL", [key_id]
            ).fetchone()
        return row is not None

    def list_all(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self.db.read() as cur:
            rows = cur.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at").fetchall()
        return [ApiKey(*r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke at once: once this returns, every request with the key is a 401. The cache
        is cleared after the commit (before it, a lookup could cache the row again), and a
        lookup that read the row before the commit does not cache it (`_revokes`)."""
        with self.db.write() as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                [utcnow(), key_id],
            )
            if cur.fetchone()[0] == 0:
                raise NotFound(f"No active API key with id '{key_id}': see `scanbatch keys list`")
            row = cur.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", [key_id]).fetchone()
        with self._lock:
            self._revokes += 1
            self._by_hash.clear()
        return ApiKey(*row)
