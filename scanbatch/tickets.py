"""Upload tickets (see `scanbatch.web.tickets` for why): minted for one batch, used up by one
POST. They live in this process only, hashed as keys are in the store: a ticket lasts minutes,
and after a restart the page simply asks for a new one."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from scanbatch.errors import Forbidden, Unauthorized
from scanbatch.models import TicketCreate
from scanbatch.store.keys import ApiKey, hash_token

PREFIX = "sbt_"
# Used and expired tickets are remembered this long past their expiry, so that a second use
# is told "already used" rather than "unknown".
REMEMBER = timedelta(minutes=10)
_AGAIN = "press Send again on the page, which asks for a new ticket"


@dataclass(frozen=True)
class Ticket:
    key: ApiKey  # the minting key's user and role
    origin: str
    photos: int
    bytes: int
    expires_at: datetime
    used_at: datetime | None = None


@dataclass
class TicketBook:
    _tickets: dict[str, Ticket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mint(self, key: ApiKey, body: TicketCreate, seconds: float) -> tuple[str, Ticket]:
        token = PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        key = replace(key, ticket=True)
        ticket = Ticket(key, body.origin, body.photos, body.bytes, now + timedelta(seconds=seconds))
        with self._lock:
            self._forget(now)
            self._tickets[hash_token(token)] = ticket
        return token, ticket

    def key(self, token: str) -> ApiKey:
        """The ticket's key, if it may still be used (it is not used up here: the server asks
        this from the headers, before the body is read), else 401 saying why."""
        with self._lock:
            return self._usable(self._tickets.get(hash_token(token)), datetime.now(UTC)).key

    def redeem(self, token: str, origin: str | None, photos: int, size: int) -> Ticket:
        """Use the ticket up for this request, or 401/403 saying why. Used up even when the
        request is refused, here or later: a ticket is one POST."""
        now = datetime.now(UTC)
        with self._lock:
            digest = hash_token(token)
            ticket = self._usable(self._tickets.get(digest), now)
            self._tickets[digest] = replace(ticket, used_at=now)
        if origin != ticket.origin:
            raise Forbidden(
                f"This upload ticket was made for the page at {ticket.origin}, and this request "
                f"comes from {origin or 'no page (no Origin header)'}: send the photos from that "
                "page"
            )
        if (photos, size) != (ticket.photos, ticket.bytes):
            raise Forbidden(
                f"This upload ticket is for {ticket.photos} photo(s) of {ticket.bytes:,} bytes "
                f"in all, and this request carries {photos} of {size:,}: {_AGAIN}"
            )
        return ticket

    @staticmethod
    def _usable(ticket: Ticket | None, now: datetime) -> Ticket:
        if ticket is None:
            raise Unauthorized(f"Unknown upload ticket (the server may have restarted): {_AGAIN}")
        if ticket.used_at is not None:
            raise Unauthorized(
                f"This upload ticket was already used at {ticket.used_at:%H:%M:%S} UTC; a "
                f"ticket sends one batch: {_AGAIN}"
            )
        if now >= ticket.expires_at:
            raise Unauthorized(
                f"This upload ticket expired at {ticket.expires_at:%H:%M:%S} UTC: {_AGAIN}"
            )
        return ticket

    def _forget(self, now: datetime) -> None:
        for digest in [d for d, t in self._tickets.items() if now > t.expires_at + REMEMBER]:
            del self._tickets[digest]


def is_ticket(token: str) -> bool:
    return token.startswith(PREFIX)
