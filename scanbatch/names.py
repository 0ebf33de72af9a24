"""The names every part of scanbatch shares: the six fields a record is read for (with the
labels a person sees), the roles an API key can have, and the identities used where no key
is involved. Spelled out here once; everything else imports them."""

from __future__ import annotations

from enum import StrEnum

# The API's camelCase names, in the order every table and form shows them.
FIELDS = ("artistName", "albumTitle", "labelName", "catalogNumber", "reviewText", "upc")

FIELD_LABELS = {
    "artistName": "Artist",
    "albumTitle": "Album title",
    "labelName": "Label",
    "catalogNumber": "Catalog number",
    "reviewText": "Review sticker",
    "upc": "UPC",
}


class Role(StrEnum):
    """What an API key may do. A `dj` submits and reads their own jobs; a `musicDirector` also
    reviews everyone's records; a `stationManager` also manages keys and sees every job."""

    DJ = "dj"
    MUSIC_DIRECTOR = "musicDirector"
    STATION_MANAGER = "stationManager"


# Roles that may change shared data and see everyone's records: delete jobs, save reviews,
# read the review queue, metrics and the golden-set export.
WRITE_ROLES = frozenset({Role.MUSIC_DIRECTOR, Role.STATION_MANAGER})

# Who owns a job submitted by `scanbatch run` (no key, no server).
LOCAL_RUN_USER = "local"
# Who the server's per-process admin token acts as (the CLI and a workbench opened without a
# token); shown in the page so reviews saved that way are recognisable.
LOCAL_ADMIN_USER = "(local admin)"
