"""Reviews in the store: the current truth per item (`scan_reviews`) and every review ever
saved (`scan_review_history`, append-only). The server is the only writer, as for jobs.

There is no foreign key from reviews to `scan_results`: duckdb 2.0 refuses updates of a
referenced parent's rows in some cases, and results are updated while a job runs. Consistency
is kept here instead: a review is only written for an existing, finished item, and
`JobStore.delete_job` removes a job's reviews with its results."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from scanbatch.audit import (
    GroupBy,
    LeaseView,
    PhotoRef,
    ReviewInput,
    ReviewItem,
    ReviewPage,
    ReviewSort,
    ReviewState,
    ReviewView,
    Scope,
    Verdict,
    field_verdicts,
    verdict,
    version_of,
)
from scanbatch.catalog.lookup import matched_albums
from scanbatch.errors import BadRequest, Conflict, NotFound, PreconditionFailed
from scanbatch.estimates import MATCH, OVERALL, Records, all_fields
from scanbatch.models import PhotosPruned, Status
from scanbatch.names import FIELDS
from scanbatch.store.db import Database, parse_job_id, records, utcnow
from scanbatch.store.leases import ItemKey, Lease, LeaseBook, held_message

_ITEM_COLUMNS = """
    r.job_id, r.item_index, j.user_id, j.created_at, r.status, r.extraction,
    r.matched_album_id, r.error_message, r.extractor, r.model, r.prompt_version, r.photo_types,
    r.confidence,
    h.id AS review_id, h.revision, h.reviewer, h.reviewed_at, h.truth, h.matched_album_id AS
    truth_album_id, h.verdicts, h.match_verdict, h.note
"""

_REVIEW_JOINS = """
    LEFT JOIN scan_reviews v ON v.job_id = r.job_id AND v.item_index = r.item_index
    LEFT JOIN scan_review_history h ON h.id = v.review_id
"""
_JOINS = f"JOIN scan_jobs j ON j.id = r.job_id {_REVIEW_JOINS}"
_FROM = f"FROM scan_results r {_JOINS} WHERE r.status IN ('completed', 'failed')"

PARSED_REVIEWS = 200_000  # reviews kept parsed for the metrics (~1 KB each)

# A photo's URL, given (job id, item index, photo index); the web layer knows its routes.
PhotoUrl = Callable[[str, int, int], str]
# Photos of an item as (photo type, MIME type) pairs, read from the job folder.
PhotoLister = Callable[[str, int, list[str]], list[tuple[str, str]]]


def reviewed_message(reviewed: int) -> str:
    """Why a job with reviewed items is not deleted, and what to do."""
    return (
        f"The job has {reviewed} reviewed item(s) whose truth would be lost: export the "
        "golden set first (GET /library/scan/review/dataset); a stationManager may delete "
        "anyway with ?force=true"
    )


@dataclass(frozen=True)
class ReviewedItem:
    """One reviewed item with what was read and what is true: the unit of the metrics and of
    the dataset export."""

    job_id: str
    item_index: int
    outcome: dict[str, Any]  # {itemIndex, status, extraction, matchedAlbumId}, as results.jsonl
    truth: dict[str, Any]  # the six fields and albumId
    photo_types: list[str]
    context: dict[str, Any] | None
    review: ReviewView


class ReviewStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.leases = LeaseBook()
        self._parsed_reviews: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    # -- the queue ------------------------------------------------------------------------

    def items(
        self,
        *,
        state: ReviewState = ReviewState.UNREVIEWED,
        sort: ReviewSort = ReviewSort.CONFIDENCE,
        job_id: str | None = None,
        user_id: str | None = None,
        limit: int = 20,
        offset: int = 0,
        thresholds: Mapping[str, float | None] | None = None,
        photos: PhotoLister,
        photo_url: PhotoUrl,
    ) -> ReviewPage:
        """A page of the queue. `state=needsReview` takes the fields' confidence thresholds
        (`scanbatch.estimates.threshold`): a record whose every field clears its threshold
        needs no review."""
        page_from, params, order = _queue(state, sort, job_id, user_id, thresholds)
        with self.db.read() as cur:
            total = cur.execute(f"SELECT count(*) {page_from}", params).fetchone()[0]
            keys = _keys(cur, page_from, params, order, limit, offset)
            items = self._items(cur, keys, photos, photo_url)
        return ReviewPage(items=items, total=total, limit=limit, offset=offset)

    def next(
        self,
        holder: str,
        seconds: float,
        *,
        state: ReviewState = ReviewState.UNREVIEWED,
        sort: ReviewSort = ReviewSort.CONFIDENCE,
        job_id: str | None = None,
        user_id: str | None = None,
        thresholds: Mapping[str, float | None] | None = None,
        photos: PhotoLister,
        photo_url: PhotoUrl,
    ) -> ReviewItem | None:
        """The record `holder` should review next, leased to them for `seconds`: their own
        unexpired lease on a record of this queue first (one they left open in another tab),
        else the first record of the queue nobody holds. None when nothing is left."""
        page_from, params, order = _queue(state, sort, job_id, user_id, thresholds)
        own = self.leases.own(holder)
        if own:
            with self.db.read() as cur:
                queued = {
                    (str(j), i)
                    for j, i in cur.execute(
                        "SELECT r.job_id, r.item_index FROM (SELECT unnest(?::UUID[]) AS j, "
                        "unnest(?::INTEGER[]) AS i) k JOIN (SELECT r.job_id, r.item_index "
                        f"{page_from}) r ON r.job_id = k.j AND r.item_index = k.i",
                        [[j for j, _ in own], [i for _, i in own], *params],
                    ).fetchall()
                }
            for key in (k for k in own if k in queued):
                item = self._leased(key, holder, seconds, photos, photo_url)
                if item is not None and item.review is None:
                    return item
        # Every record others hold could come first: ask for one more than those, and for
        # twice as many should others take all of those meanwhile.
        limit = len(self.leases.held_by_others(holder)) + 1
        with self.db.read() as cur:
            while True:
                keys = _keys(cur, page_from, params, order, limit, 0)
                with self.leases.lock:
                    key = next((k for k in keys if self.leases.try_grant(k, holder, seconds)), None)
                if key is not None:
                    item = self._unreviewed(key, holder, photos, photo_url)
                    if item is not None:
                        return item
                    continue  # saved (and released) between the page's read and the grant
                if len(keys) < limit:
                    return None  # what is left of the queue, others are on
                limit *= 2

    def _unreviewed(
        self, key: ItemKey, holder: str, photos: PhotoLister, photo_url: PhotoUrl
    ) -> ReviewItem | None:
        """The record just leased to `holder`, read anew: a save commits before it releases
        its lease, so a record granted here that a colleague saved since shows its review
        now, and is given back."""
        with self.db.read() as cur:
            items = self._items(cur, [key], photos, photo_url)
        if items and items[0].review is None:
            return items[0]
        self.leases.release(key, holder)
        return None

    def lease(
        self,
        job_id: str,
        item_index: int,
        holder: str,
        seconds: float,
        *,
        photos: PhotoLister,
        photo_url: PhotoUrl,
    ) -> ReviewItem:
        """Lease one record picked from the queue to `holder`: 404 for an unknown one, 409 for
        one still being read or held by someone else."""
        key = (parse_job_id(job_id), item_index)
        self._finished_status(key)
        item = self._leased(key, holder, seconds, photos, photo_url)
        if item is None:  # its job was deleted just now
            raise NotFound(f"Job not found, or it has no item {item_index}")
        return item

    def release(self, job_id: str, item_index: int, holder: str | None) -> None:
        """End `holder`'s lease on the record (any holder's for None): 404 for an unknown
        record; releasing a record nobody holds is done already."""
        key = (parse_job_id(job_id), item_index)
        self._finished_status(key, unfinished_ok=True)
        lease = self.leases.current(key)
        if lease is not None and holder is not None and lease.holder != holder:
            raise Conflict(held_message(key, lease))
        self.leases.release(key, holder)

    def _finished_status(self, key: ItemKey, *, unfinished_ok: bool = False) -> None:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT status FROM scan_results WHERE job_id = ? AND item_index = ?", list(key)
            ).fetchone()
        if row is None:
            raise NotFound(f"Job not found, or it has no item {key[1]}")
        if not unfinished_ok and not Status(row[0]).finished:
            raise Conflict(f"Item {key[1]} is still {row[0]}: review it once it has finished")

    def _leased(
        self,
        key: ItemKey,
        holder: str,
        seconds: float,
        photos: PhotoLister,
        photo_url: PhotoUrl,
    ) -> ReviewItem | None:
        """The record as a queue item leased to `holder` (409 if someone else holds it); None
        if it is gone."""
        self.leases.grant(key, holder, seconds)
        with self.db.read() as cur:
            items = self._items(cur, [key], photos, photo_url)
        if not items:
            self.leases.release(key, holder)
            return None
        return items[0]

    def _items(
        self, cur: Any, keys: list[ItemKey], photos: PhotoLister, photo_url: PhotoUrl
    ) -> list[ReviewItem]:
        """Everything about the records `keys` (those that exist), in that order."""
        rel = cur.execute(
            f"SELECT {_ITEM_COLUMNS}, p.pruned_at, p.reason AS pruned_why "
            "FROM (SELECT unnest(?::UUID[]) AS job_id, unnest(?::INTEGER[]) AS item_index) k "
            "JOIN scan_results r ON r.job_id = k.job_id AND r.item_index = k.item_index "
            f"{_JOINS} "
            "LEFT JOIN photo_prunes p ON p.job_id = r.job_id AND p.item_index = r.item_index",
            [[j for j, _ in keys], [i for _, i in keys]],
        )
        found = {(str(r["job_id"]), r["item_index"]): r for r in records(rel)}
        rows = [found[k] for k in keys if k in found]
        albums = matched_albums(cur, (r["matched_album_id"] for r in rows))
        leases = self.leases.of(found)
        items = []
        for r in rows:
            job = str(r["job_id"])
            types = json.loads(r["photo_types"])
            pruned = (
                PhotosPruned(at=r["pruned_at"].astimezone(UTC), why=r["pruned_why"])
                if r["pruned_at"] is not None
                else None
            )
            # A pruned record lists no photos, even while a prune is still removing them.
            listed = [] if pruned else photos(job, r["item_index"], types)
            items.append(
                ReviewItem(
                    job_id=job,
                    item_index=r["item_index"],
                    user_id=r["user_id"],
                    created_at=r["created_at"].astimezone(UTC),
                    status=Status(r["status"]),
                    confidence=r["confidence"],
                    extraction=json.loads(r["extraction"]) if r["extraction"] else None,
                    matched_album_id=r["matched_album_id"],
                    matched_album=albums.get(r["matched_album_id"]),
                    error_message=r["error_message"],
                    extractor=r["extractor"],
                    model=r["model"],
                    prompt_version=r["prompt_version"],
                    photos=[
                        PhotoRef(
                            index=n,
                            photo_type=photo_type,
                            mime_type=mime,
                            url=photo_url(job, r["item_index"], n),
                        )
                        for n, (photo_type, mime) in enumerate(listed)
                    ],
                    photos_pruned=pruned,
                    review=_review_view(r) if r["review_id"] else None,
                    lease=_lease_view(leases.get((job, r["item_index"]))),
                    version=version_of(r["revision"] if r["review_id"] else 0),
                )
            )
        return items

    # -- saving ---------------------------------------------------------------------------

    def save(
        self,
        job_id: str,
        item_index: int,
        reviewer: str,
        review: ReviewInput,
        *,
        if_match: Sequence[str] | None = None,
        if_none_match: bool = False,
    ) -> ReviewView:
        """Store `review` as the item's truth; the one it replaces stays in the history.
        All checks happen before anything is written: 409 while someone else holds the
        record's lease; with `if_match` (the versions the reviewer edited, or "*"), 412 when
        someone saved since; with `if_none_match`, 412 when anyone has. The saver's lease ends."""
        job_id = parse_job_id(job_id)
        key = (job_id, item_index)
        truth = review.fields.by_field()
        self.leases.check(key, reviewer)
        with self.db.write() as cur:
            row = cur.execute(
                "SELECT status, extraction, matched_album_id FROM scan_results "
                "WHERE job_id = ? AND item_index = ?",
                [job_id, item_index],
            ).fetchone()
            if row is None:
                raise NotFound(f"Job not found, or it has no item {item_index}")
            status, extraction, matched = row
            if not Status(status).finished:
                raise Conflict(
                    f"Item {item_index} is still {status}: review it once it has finished"
                )
            if review.matched_album_id is not None and not matched_albums(
                cur, [review.matched_album_id]
            ):
                raise BadRequest(
                    f"matchedAlbumId {review.matched_album_id} is not in the catalog: search "
                    "the catalog for the right album id, or send null for no album"
                )
            _check_version(cur, key, if_match, if_none_match)
            verdicts = field_verdicts(json.loads(extraction) if extraction else None, truth)
            match_verdict = verdict(None, matched, review.matched_album_id)
            revision = (
                cur.execute(
                    "SELECT coalesce(max(revision), 0) FROM scan_review_history "
                    "WHERE job_id = ? AND item_index = ?",
                    [job_id, item_index],
                ).fetchone()[0]
                + 1
            )
            review_id = str(uuid.uuid4())
            now = utcnow()
            cur.execute(
                "INSERT INTO scan_review_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    review_id,
                    job_id,
                    item_index,
                    revision,
                    reviewer,
                    now,
                    json.dumps(truth),
                    review.matched_album_id,
                    json.dumps({k: v.value for k, v in verdicts.items()}),
                    match_verdict.value,
                    review.note,
                ],
            )
            cur.execute(
                "INSERT INTO scan_reviews VALUES (?, ?, ?, ?) ON CONFLICT (job_id, item_index) "
                "DO UPDATE SET review_id = excluded.review_id, reviewed_at = excluded.reviewed_at",
                [job_id, item_index, review_id, now],
            )
        self.leases.release(key, reviewer)
        return ReviewView(
            job_id=job_id,
            item_index=item_index,
            reviewer=reviewer,
            reviewed_at=now,
            fields=truth,
            matched_album_id=review.matched_album_id,
            note=review.note,
            verdicts=verdicts,
            match_verdict=match_verdict,
            revision=revision,
            version=version_of(revision),
        )

    def history(self, job_id: str, item_index: int) -> list[ReviewView]:
        """Every review of the item, oldest first."""
        with self.db.read() as cur:
            rel = cur.execute(
                "SELECT job_id, item_index, id AS review_id, revision, reviewer, reviewed_at, "
                "truth, matched_album_id AS truth_album_id, verdicts, match_verdict, note "
                "FROM scan_review_history WHERE job_id = ? AND item_index = ? ORDER BY revision",
                [parse_job_id(job_id), item_index],
            )
            return [_review_view(r) for r in records(rel)]

    def count_for_job(self, job_id: str) -> int:
        with self.db.read() as cur:
            return cur.execute(
                "SELECT count(*) FROM scan_reviews WHERE job_id = ?", [parse_job_id(job_id)]
            ).fetchone()[0]

    # -- what metrics and exports read ----------------------------------------------------

    def population(
        self, *, group_by: GroupBy = GroupBy.NONE, scope: Scope = Scope()
    ) -> dict[str | None, Records]:
        """Every finished record in `scope`, as the arrays the estimates take, per group."""
        where, params = _scope_filter(scope)
        fields = ", ".join(
            f"{_field_confidence(name)} AS c{k}, "
            f"(json_extract_string(h.verdicts, '$.{name}') = 'correct')::DOUBLE AS y{k}"
            for k, name in enumerate(FIELDS)
        )
        with self.db.read() as cur:
            columns = cur.execute(
                f"SELECT {_GROUP_COLUMN[group_by]} AS grp, "
                "coalesce(r.audit_key, 1.0) AS audit_key, r.confidence, "
                "epoch(r.created_at) AS created, v.review_id IS NOT NULL AS reviewed, "
                f"(h.match_verdict = 'correct')::DOUBLE AS y_match, {fields} "
                f"FROM scan_results r {_REVIEW_JOINS} "
                f"WHERE r.status IN ('completed', 'failed'){where}",
                params,
            ).fetchnumpy()

        def floats(name: str) -> np.ndarray:
            return np.ma.filled(np.ma.asarray(columns[name]).astype(float), np.nan)

        everything = Records(
            key=floats("audit_key"),
            confidence=floats("confidence"),
            created=floats("created"),
            reviewed=np.ma.filled(np.ma.asarray(columns["reviewed"]), False).astype(bool),
            right={name: floats(f"y{k}") for k, name in enumerate(FIELDS)},
            field_confidence={name: floats(f"c{k}") for k, name in enumerate(FIELDS)},
        )
        everything.right[MATCH] = floats("y_match")
        everything.right[OVERALL] = all_fields(everything.right)
        if group_by is GroupBy.NONE:
            return {None: everything}
        masked = np.ma.asarray(columns["grp"], dtype=object)
        groups = np.array(masked.data, dtype=object)
        groups[np.ma.getmaskarray(masked)] = None  # filled(None) would fill with "?"
        return {g: everything.subset(groups == g) for g in dict.fromkeys(groups.tolist())}

    def judged(
        self, *, group_by: GroupBy = GroupBy.NONE, scope: Scope = Scope()
    ) -> dict[str | None, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Per group, (truth items, outcomes) of every reviewed record in `scope`, numbered
        0..n-1, as `scanbatch.evaluate.evaluate` takes them: the metrics' reviewed-only
        figures. Only what scoring reads (`reviewed` builds whole items, ~5x slower)."""
        where, params = _scope_filter(scope)
        with self.db.read() as cur:
            # From the reviews, the few, to their results: not from every result.
            rows = cur.execute(
                f"SELECT {_GROUP_COLUMN[group_by]}, v.review_id, r.status, r.matched_album_id, "
                "h.matched_album_id FROM scan_reviews v "
                "JOIN scan_review_history h ON h.id = v.review_id "
                "JOIN scan_results r ON r.job_id = v.job_id AND r.item_index = v.item_index "
                f"WHERE r.status IN ('completed', 'failed'){where} "
                "ORDER BY h.reviewed_at, r.job_id, r.item_index",
                params,
            ).fetchall()
            parsed = self._parsed(cur, [row[1] for row in rows])
        out: dict[str | None, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        for group, review_id, status, matched, album in rows:
            truth, extraction = parsed[review_id]
            truths, outcomes = out.setdefault(group, ([], []))
            n = len(truths)
            truths.append({"itemIndex": n, **truth, "albumId": album})
            outcomes.append(
                {
                    "itemIndex": n,
                    "status": status,
                    "extraction": extraction,
                    "matchedAlbumId": matched,
                }
            )
        return out

    def _parsed(
        self, cur: Any, review_ids: list[str]
    ) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        """(truth, extraction) of each review, parsed once: a review never changes (a new
        one gets a new id), nor does a finished result's extraction. Parsing 4,000 JSON
        documents on every metrics request was a fifth of its time at 2,000 reviews."""
        cache = self._parsed_reviews
        missing = [r for r in review_ids if r not in cache]
        if missing:
            if len(cache) + len(missing) > PARSED_REVIEWS:
                cache.clear()
            for review_id, truth, extraction in cur.execute(
                "SELECT h.id, h.truth, r.extraction FROM scan_review_history h "
                "JOIN scan_results r ON r.job_id = h.job_id AND r.item_index = h.item_index "
                "WHERE h.id IN (SELECT unnest(?::VARCHAR[]))",
                [missing],
            ).fetchall():
                cache[review_id] = (json.loads(truth), json.loads(extraction) if extraction else {})
        return {r: cache[r] for r in review_ids}

    def reviewed(self, *, since: datetime | None = None) -> Iterator[ReviewedItem]:
        """Every item with a current review (saved after `since`), oldest review first: the
        golden set."""
        params: list[Any] = []
        filters = " AND v.review_id IS NOT NULL"
        if since is not None:
            filters += " AND h.reviewed_at > ?"
            params.append(since)
        with self.db.read() as cur:
            rel = cur.execute(
                f"SELECT {_ITEM_COLUMNS}, r.context, r.completed_at "
                f"{_FROM}{filters} "
                "ORDER BY h.reviewed_at, r.job_id, r.item_index",
                params,
            )
            rows = records(rel)
        for r in rows:
            review = _review_view(r)
            yield ReviewedItem(
                job_id=str(r["job_id"]),
                item_index=r["item_index"],
                outcome={
                    "itemIndex": r["item_index"],
                    "status": r["status"],
                    "extraction": json.loads(r["extraction"]) if r["extraction"] else {},
                    "matchedAlbumId": r["matched_album_id"],
                    "finishedAt": (r["completed_at"] or review.reviewed_at).isoformat(),
                },
                truth={**review.fields, "albumId": review.matched_album_id},
                photo_types=json.loads(r["photo_types"]),
                context=json.loads(r["context"]) if r["context"] else None,
                review=review,
            )


_GROUP_COLUMN = {
    GroupBy.NONE: "NULL",
    GroupBy.PROMPT_VERSION: "r.prompt_version",
    GroupBy.MODEL: "r.model",
    GroupBy.EXTRACTOR: "r.extractor",
}


def _queue(
    state: ReviewState,
    sort: ReviewSort,
    job_id: str | None,
    user_id: str | None,
    thresholds: Mapping[str, float | None] | None,
) -> tuple[str, list[Any], str]:
    """The queue's FROM … WHERE, its parameters and its ORDER BY, from the narrowest join that
    can filter and sort it: a full join of results, jobs and review history for every row cost
    ~10x more, so the records' details are read for the page's keys only (`_items`)."""
    where, params = ["r.status IN ('completed', 'failed')"], []
    joins = " LEFT JOIN scan_reviews v ON v.job_id = r.job_id AND v.item_index = r.item_index"
    if state in (ReviewState.UNREVIEWED, ReviewState.NEEDS_REVIEW):
        where.append("v.review_id IS NULL")
    elif state is ReviewState.REVIEWED:
        where.append("v.review_id IS NOT NULL")
    if state is ReviewState.NEEDS_REVIEW:
        if thresholds is None:
            raise ValueError("state=needsReview needs the fields' thresholds")
        cleared = [
            f"{_field_confidence(name)} >= ?" for name in FIELDS if thresholds.get(name) is not None
        ]
        if len(cleared) == len(FIELDS):  # else no record clears every field
            where.append(f"NOT coalesce({' AND '.join(cleared)}, false)")
            params += [thresholds[name] for name in FIELDS]
    if job_id is not None:
        where.append("r.job_id = ?")
        params.append(parse_job_id(job_id))
    if user_id is not None:
        joins += " JOIN scan_jobs j ON j.id = r.job_id"
        where.append("j.user_id = ?")
        params.append(user_id)
    order = {
        ReviewSort.CONFIDENCE: "r.confidence ASC NULLS FIRST, r.created_at",
        ReviewSort.NEWEST: "r.created_at DESC",
        ReviewSort.AUDIT: "r.audit_key ASC NULLS LAST",
    }[sort] + ", r.job_id, r.item_index"
    return f"FROM scan_results r{joins} WHERE {' AND '.join(where)}", params, order


def _keys(
    cur: Any, page_from: str, params: list[Any], order: str, limit: int, offset: int
) -> list[ItemKey]:
    return [
        (str(j), i)
        for j, i in cur.execute(
            f"SELECT r.job_id, r.item_index {page_from} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
    ]


def _check_version(
    cur: Any, key: ItemKey, if_match: Sequence[str] | None, if_none_match: bool
) -> None:
    """412 naming who saved and when, if the reviewer's version is not the item's now."""
    if if_match is None and not if_none_match:
        return
    row = cur.execute(
        "SELECT h.revision, h.reviewer, h.reviewed_at FROM scan_reviews v "
        "JOIN scan_review_history h ON h.id = v.review_id "
        "WHERE v.job_id = ? AND v.item_index = ?",
        list(key),
    ).fetchone()
    revision, reviewer, at = row if row else (0, None, None)
    current = version_of(revision)
    if if_none_match and row:
        stale = True
    elif if_match is not None:
        stale = not ("*" in if_match and row) and current not in if_match
    else:
        stale = False
    if not stale:
        return
    if row is None:
        raise PreconditionFailed(
            f"Item {key[1]} has no review yet, so it is not at version "
            f"{', '.join(if_match or [])}: reload the record and save again"
        )
    raise PreconditionFailed(
        f"{reviewer} saved a review of item {key[1]} at {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} "
        f"UTC (version {current}) after you opened it: reload the record to see their review, "
        "then save yours over it if it is still right"
    )


def _lease_view(lease: Lease | None) -> LeaseView | None:
    return None if lease is None else LeaseView(holder=lease.holder, until=lease.until)


def _field_confidence(name: str) -> str:
    """The confidence the reader gave field `name` (also to an empty value: how sure it was
    that nothing is there), NULL when it gave none."""
    return f'r.field_confidence."{name}"'


def _scope_filter(scope: Scope) -> tuple[str, list[Any]]:
    where, params = "", []
    for sql, value in (
        ("r.created_at >= ?", scope.since),
        ("r.created_at < ?", scope.until),
        ("r.prompt_version = ?", scope.prompt_version),
        ("r.model = ?", scope.model),
        ("r.extractor = ?", scope.extractor),
    ):
        if value is not None:
            where += f" AND {sql}"
            params.append(value)
    return where, params


def _review_view(r: dict[str, Any]) -> ReviewView:
    return ReviewView(
        job_id=str(r["job_id"]),
        item_index=r["item_index"],
        reviewer=r["reviewer"],
        reviewed_at=r["reviewed_at"].astimezone(UTC),
        fields=json.loads(r["truth"]),
        matched_album_id=r["truth_album_id"],
        note=r["note"],
        verdicts={k: Verdict(v) for k, v in json.loads(r["verdicts"]).items()},
        match_verdict=Verdict(r["match_verdict"]),
        revision=r["revision"],
        version=version_of(r["revision"]),
    )
