"""Who is reviewing which record: leases handed out by `POST /library/scan/review/next`.

A lease is coordination, not data: it keeps two reviewers off one record for a few minutes,
and nothing is lost without it (a save still carries its version, so a stale one is refused
with 412). So leases live in the server's memory, beside the store's token cache, and are
checked and granted under one lock, which is what makes twenty reviewers asking at once get
twenty different records. A restart forgets them: reviewers then simply ask again."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scanbatch.errors import Conflict

ItemKey = tuple[str, int]  # (job id, item index)


@dataclass(frozen=True)
class Lease:
    holder: str
    until: datetime


def held_message(key: ItemKey, lease: Lease) -> str:
    return (
        f"{lease.holder} is reviewing item {key[1]} of job {key[0]} (leased until "
        f"{lease.until:%H:%M:%S} UTC): take another record, or ask {lease.holder} to release "
        "it (a stationManager may release any lease)"
    )


class LeaseBook:
    def __init__(self) -> None:
        self._leases: dict[ItemKey, Lease] = {}
        self.lock = threading.Lock()

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    def current(self, key: ItemKey, now: datetime | None = None) -> Lease | None:
        lease = self._leases.get(key)
        if lease is not None and lease.until <= (now or self.now()):
            return None
        return lease

    def of(self, keys: Iterable[ItemKey]) -> dict[ItemKey, Lease]:
        now = self.now()
        found = {k: self.current(k, now) for k in keys}
        return {k: lease for k, lease in found.items() if lease is not None}

    def held(self) -> set[ItemKey]:
        """Every record someone holds now."""
        now = self.now()
        with self.lock:
            self._expire(now)
            return set(self._leases)

    def held_by_others(self, holder: str) -> set[ItemKey]:
        now = self.now()
        with self.lock:
            self._expire(now)
            return {k for k, lease in self._leases.items() if lease.holder != holder}

    def own(self, holder: str) -> list[ItemKey]:
        """The holder's unexpired leases, longest held first."""
        now = self.now()
        with self.lock:
            self._expire(now)
            mine = [(lease.until, k) for k, lease in self._leases.items() if lease.holder == holder]
        return [k for _until, k in sorted(mine)]

    def try_grant(self, key: ItemKey, holder: str, seconds: float) -> Lease | None:
        """Lease `key` to `holder` (renewed if theirs), or None when someone else holds it.
        The caller holds `lock`."""
        now = self.now()
        lease = self.current(key, now)
        if lease is not None and lease.holder != holder:
            return None
        lease = Lease(holder, now + timedelta(seconds=seconds))
        self._leases[key] = lease
        return lease

    def grant(self, key: ItemKey, holder: str, seconds: float) -> Lease:
        with self.lock:
            lease = self.try_grant(key, holder, seconds)
            if lease is None:
                raise Conflict(held_message(key, self._leases[key]))
            return lease

    def check(self, key: ItemKey, holder: str) -> None:
        """409 naming the holder when someone else holds `key`."""
        lease = self.current(key)
        if lease is not None and lease.holder != holder:
            raise Conflict(held_message(key, lease))

    def release(self, key: ItemKey, holder: str | None) -> Lease | None:
        """Drop the lease on `key` if `holder` holds it (any holder's for None); the lease
        dropped, or None."""
        with self.lock:
            lease = self.current(key)
            if lease is None or (holder is not None and lease.holder != holder):
                return None
            return self._leases.pop(key)

    def forget_job(self, job_id: str) -> None:
        with self.lock:
            for key in [k for k in self._leases if k[0] == job_id]:
                del self._leases[key]

    def _expire(self, now: datetime) -> None:
        for key in [k for k, lease in self._leases.items() if lease.until <= now]:
            del self._leases[key]
