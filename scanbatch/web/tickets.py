"""Upload tickets: the workbench page's browser sends a crate straight to the API.

The page's kernel holds the director's API token; the browser must not (any script on the
page could read it). So the kernel mints a ticket for one batch (`POST
/library/scan/upload-tickets`), and the browser sends that batch with the ticket as its bearer
token. A ticket is good for one `POST /library/scan/batch`, from the page's origin, with the
photo count and bytes it was minted for, within `SCANBATCH_UPLOAD_TICKET_SECONDS`; it acts as
its user. The book of tickets is `scanbatch.tickets`; CORS for the page is
`scanbatch.web.cors`."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from scanbatch.errors import BadRequest
from scanbatch.models import TicketCreate, UploadTicket
from scanbatch.tickets import is_ticket
from scanbatch.web.auth import require_write
from scanbatch.web.forms import json_body
from scanbatch.web.openapi import operation
from scanbatch.web.services import services

bp = Blueprint("tickets", __name__, url_prefix="/library/scan")

BATCH_PATH = "/library/scan/batch"


def redeem_for_batch(photos: int, size: int) -> None:
    """Use up the request's ticket, if it came with one (the batch POST asks this once its
    files are staged, before anything is created)."""
    token = request.headers.get("Authorization", "").partition(" ")[2].strip()
    if is_ticket(token):
        services().tickets.redeem(token, request.headers.get("Origin"), photos, size)


operation(
    "post",
    "/library/scan/upload-tickets",
    "A ticket for the workbench page's browser to send one batch straight to the API "
    "(`Authorization: Bearer <ticket>` on `POST /library/scan/batch`, from that origin, with "
    "that many photos and bytes, once, within SCANBATCH_UPLOAD_TICKET_SECONDS)",
    json_body=TicketCreate,
    responses={
        201: UploadTicket,
        400: "photos, bytes or origin missing or out of range, or an origin not in "
        "SCANBATCH_PAGE_ORIGINS",
        403: "The caller's role may not submit batches",
    },
)


@bp.post("/upload-tickets")
def create_ticket() -> Response:
    key = require_write()  # never a ticket: those open only the batch POST (web.auth)
    body = json_body(TicketCreate)
    settings = services().settings
    origin = body.origin.rstrip("/")
    if origin not in settings.allowed_page_origins:
        allowed = ", ".join(sorted(settings.allowed_page_origins)) or "none"
        raise BadRequest(
            f"origin {origin} is not a page this server accepts batches from (allowed: "
            f"{allowed}): add it to SCANBATCH_PAGE_ORIGINS and restart the server"
        )
    body = body.model_copy(update={"origin": origin})
    token, ticket = services().tickets.mint(key, body, settings.upload_ticket_seconds)
    reply = UploadTicket(
        ticket=token,
        expires_at=ticket.expires_at,
        photos=ticket.photos,
        bytes=ticket.bytes,
        origin=ticket.origin,
        url=request.host_url.rstrip("/") + BATCH_PATH,
    )
    response = jsonify(reply.to_json_dict())
    response.status_code = 201
    return response
