"""Scoring a job's results against ground truth (a synthetic set's `truth.json`, or any file
of the same shape): per-field exact match after normalisation and character similarity,
catalog match accuracy, and confidence calibration.

Pure functions: `evaluate(truth, outcomes)` takes already-loaded data; `load_truth` and
`load_outcomes` read files (results.jsonl, a job folder, or the API's job status JSON)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rapidfuzz import fuzz

from scanbatch.errors import BadRequest
from scanbatch.jobfolder import RESULTS, JobFolder, first_per_item, read_results
from scanbatch.models import ItemOutcome
from scanbatch.names import FIELDS

# Upper edges of the confidence buckets; the last bucket includes 1.0.
BUCKET_EDGES = (0.5, 0.7, 0.8, 0.9, 1.0)


# --- normalisation ---------------------------------------------------------------------------


def _fold(text: str) -> str:
    """Casefolded, accents stripped (é → e), compatibility forms unified (ﬁ → fi)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@functools.lru_cache(maxsize=1 << 16)  # the metrics route compares thousands of repeats
def normalize(field_name: str, value: str | None) -> str:
    """The form two values are compared in. Text fields: case, accents, punctuation and
    runs of whitespace do not count. Catalog numbers: separators do not count either
    (`SP-7425` = `SP 7425` = `sp7425`). UPCs: digits only, and a 13-digit code with a
    leading 0 is the same UPC-A as its 12 last digits (zxing reports UPC-A as EAN-13)."""
    if value is None:
        return ""
    if field_name == "upc":
        digits = re.sub(r"\D", "", value)
        return digits[1:] if len(digits) == 13 and digits.startswith("0") else digits
    folded = _fold(value)
    if field_name == "catalogNumber":
        return re.sub(r"[\W_]", "", folded)
    return " ".join(re.sub(r"[\W_]", " ", folded).split())


@functools.lru_cache(maxsize=1 << 16)
def similarity(field_name: str, predicted: str | None, true: str | None) -> float:
    """Character-level similarity of the normalised values, 0..1 (rapidfuzz ratio)."""
    a, b = normalize(field_name, predicted), normalize(field_name, true)
    if not a and not b:
        return 1.0
    return fuzz.ratio(a, b) / 100.0


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the evaluation needs from one result, whatever file it came from."""

    item_index: int
    status: str
    extraction: dict[str, Any]
    matched_album_id: int | None


def _outcome(obj: Outcome | ItemOutcome | Mapping[str, Any]) -> Outcome:
    if isinstance(obj, Outcome):
        return obj
    if isinstance(obj, ItemOutcome):
        return Outcome(obj.item_index, str(obj.status), obj.extraction or {}, obj.matched_album_id)
    return Outcome(
        int(obj["itemIndex"]),
        str(obj.get("status", "completed")),
        dict(obj.get("extraction") or {}),
        obj.get("matchedAlbumId"),
    )


def _predicted(extraction: Mapping[str, Any], name: str) -> tuple[str | None, float | None]:
    entry = extraction.get(name)
    if entry is None:
        return None, None
    if type(entry) is dict or isinstance(entry, Mapping):  # the ABC check is slow; most are dicts
        value, conf = entry.get("value"), entry.get("confidence")
        if value is None or str(value).strip() == "":
            return None, None
        return str(value), float(conf) if conf is not None else None
    return (str(entry), None) if str(entry).strip() else (None, None)


def load_truth(path: Path) -> list[dict[str, Any]]:
    """The items of a truth file: `{"items": [...]}` (as `scanbatch synth` writes) or a bare
    list; each item has `itemIndex` (or is taken in order) and the fields, null when unknown."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadRequest(f"truth file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"truth file {path} is not valid JSON: {exc}") from None
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadRequest(f"truth file {path} must hold an `items` list of objects")
    out = []
    for pos, item in enumerate(items):
        idx = item.get("itemIndex", pos)
        if not isinstance(idx, int):
            raise BadRequest(f"truth file {path}: items[{pos}].itemIndex must be an integer")
        out.append({**item, "itemIndex": idx})
    return out


def load_outcomes(path: Path) -> list[Outcome]:
    """Results from a `results.jsonl`, a job folder holding one, or a job status JSON
    (`{"results": [...]}` as `GET /library/scan/batch/<jobId>` returns it), numbered as the
    job numbers them (from 0). For several jobs of one dataset, `load_dataset_outcomes`."""
    parts = load_parts(path)
    if len(parts) > 1:
        raise BadRequest(
            f"results file {path} holds {len(parts)} jobs, each numbering its items from 0: "
            "score them with `scanbatch eval TRUTH RESULTS...` (load_dataset_outcomes)"
        )
    return parts[0].outcomes


@dataclass
class JobResults:
    """One job's results as a file gave them, numbered from 0 within the job, and what says
    where the job's items sit in the dataset."""

    label: str  # the file (and job) they came from, for messages
    outcomes: list[Outcome]
    items: int | None  # how many items the job has (its manifest, or totalItems), if known
    first_item: int | None = None  # the dataset's index of its item 0, when the file says
    folder: Path | None = None  # its job folder (photos named by item), when there is one
    placed_by: str = ""  # how `place_jobs` placed it: for the summary line


def load_parts(path: Path) -> list[JobResults]:
    """The jobs in one results source: a `results.jsonl` (with its job folder's manifest
    beside it, when there), a job folder, a job status JSON, or the JSON `scanbatch run`
    prints for several jobs (`{"jobs": [{"firstItem": n, ...job status}, ...]}`)."""
    path = Path(path)
    if path.is_dir():
        path = JobFolder(path).results_path
    if not path.is_file():
        raise BadRequest(f"results file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None  # several lines: results.jsonl
    if isinstance(doc, dict) and isinstance(doc.get("jobs"), list) and "results" not in doc:
        return [_status_part(f"{path} jobs[{n}]", job) for n, job in enumerate(doc["jobs"])]
    if isinstance(doc, dict) and "results" in doc:
        return [_status_part(str(path), doc)]
    try:
        # Each item's first line, as the store and the job's GET have it.
        outcomes = [_outcome(o) for o in first_per_item(read_results(path)[0]).values()]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(
            f"results file {path} is neither a job status JSON nor results.jsonl lines "
            f"({where}: {first['msg']})"
        ) from None
    folder = JobFolder(path.parent)
    items = None
    if folder.manifest_path.is_file():
        try:
            manifest = json.loads(folder.manifest_path.read_text(encoding="utf-8"))
            items = len(manifest["items"])
        except (ValueError, KeyError, TypeError):
            items = None
    label = str(path.parent if path.name == RESULTS else path)
    return [JobResults(label, outcomes, items, folder=folder.path if items is not None else None)]


def _status_part(label: str, doc: Any) -> JobResults:
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise BadRequest(f"results file {label}: `results` must be a list")
    try:
        outcomes = [_outcome(r) for r in doc["results"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(
            f"results file {label}: a result lacks a valid itemIndex ({exc})"
        ) from None
    first = doc.get("firstItem")
    total = doc.get("totalItems")
    for name, value in (("firstItem", first), ("totalItems", total)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise BadRequest(f"results file {label}: {name} must be a whole number, got {value!r}")
    if "jobId" in doc:
        label = f"{label} (job {doc['jobId']})"
    return JobResults(label, outcomes, total, first)


def load_dataset_outcomes(truth_path: Path, sources: Sequence[Path]) -> list[JobResults]:
    """The jobs of `sources`, each placed in the dataset of `truth_path` (`place_jobs`)."""
    parts = [part for source in sources for part in load_parts(source)]
    return place_jobs(load_truth(truth_path), parts, Path(truth_path).parent)


def place_jobs(
    truth: Sequence[Mapping[str, Any]], parts: list[JobResults], dataset_dir: Path | None = None
) -> list[JobResults]:
    """Each job's results renumbered to the dataset's item indexes. A dataset bigger than one
    batch runs as several jobs, each numbering its items from 0, so a job's item i is the
    dataset's item `first + i` where the job starts at `first`, found, in this order:
    - from the file: `firstItem`, as `scanbatch run` prints it for several jobs;
    - from its job folder: a job of a dataset (run by `scanbatch run`, or uploaded through the
      workbench) holds the dataset's photos byte for byte, so each item goes to the dataset
      item with the same photos, whatever order the folders were given in;
    - one source alone: it starts at 0, as one job of the whole dataset does;
    - never from the order the sources were given in (a shell lists job folders by id).
    Two results for one dataset item are refused (the same job twice, or jobs of another
    dataset), so a mistake cannot quietly score one record against another's truth."""
    photos: dict[tuple[str, ...], list[int]] | None = None
    placed: dict[int, str] = {}
    out = []
    for part in parts:
        mapping: dict[int, int] | None = None
        if part.first_item is not None:
            start, how = part.first_item, "firstItem"
        else:
            has_photos = part.folder is not None and JobFolder(part.folder).images_dir.is_dir()
            if has_photos and dataset_dir is not None:
                if photos is None:  # hashed once, and only when a job folder can be matched
                    photos = _truth_photos(truth, dataset_dir)
                mapping = _by_photos(part, photos, placed)
            if mapping is not None:
                start, how = 0, "photos"
            elif len(parts) == 1:
                start, how = 0, "alone"
            else:
                # Never guessed from the order given: `data/jobs/*` lists jobs by id, and a
                # wrong guess scores every record against another's truth without a word.
                raise BadRequest(
                    f"results {part.label}: cannot tell which dataset items this job holds "
                    "(no firstItem, no job folder with the dataset's photos): give the JSON "
                    "`scanbatch run` printed, or the job folders"
                )
        outcomes = []
        for o in part.outcomes:
            if part.items is not None and not 0 <= o.item_index < part.items:
                raise BadRequest(
                    f"results {part.label}: item {o.item_index} is outside the job's "
                    f"{part.items} items"
                )
            index = mapping[o.item_index] if mapping is not None else start + o.item_index
            if index in placed:
                raise BadRequest(
                    f"dataset item {index} has results from {placed[index]} and from "
                    f"{part.label}: give each job once, and only jobs of this dataset"
                )
            placed[index] = part.label
            outcomes.append(replace(o, item_index=index))
        out.append(replace(part, outcomes=outcomes, placed_by=how))
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _truth_photos(
    truth: Sequence[Mapping[str, Any]], folder: Path
) -> dict[tuple[str, ...], list[int]]:
    """Dataset item indexes by the hashes of their photos (the truth's `photos`, in `folder`)."""
    out: dict[tuple[str, ...], list[int]] = {}
    for t in truth:
        names = t.get("photos")
        if not isinstance(names, list) or not names:
            continue
        paths = [folder / str(n) for n in names]
        if all(Path(str(n)).name == n and p.is_file() for n, p in zip(names, paths, strict=True)):
            out.setdefault(tuple(_sha256(p) for p in paths), []).append(int(t["itemIndex"]))
    return out


def _by_photos(
    part: JobResults, photos: dict[tuple[str, ...], list[int]], placed: Mapping[int, str]
) -> dict[int, int] | None:
    """Job item -> dataset item by identical photos; None when either side has no photos (a
    truth file alone, photos pruned), a BadRequest when a job's photos are not the dataset's."""
    if not photos or part.folder is None or part.items is None:
        return None
    folder = JobFolder(part.folder)
    if not folder.images_dir.is_dir():
        return None
    mapping: dict[int, int] = {}
    taken = set(placed)
    for i in range(part.items):
        paths = folder.image_paths(i)
        if not paths:
            return None  # pruned: the photos are gone, their order is all that is left
        candidates = photos.get(tuple(_sha256(p) for p in paths), [])
        if not candidates:
            raise BadRequest(
                f"results {part.label}: the photos of its item {i} are none of this dataset's "
                "(the truth file's `photos`): is the job from this dataset?"
            )
        # Records with identical photos take their places in turn; when every place is taken
        # (the same job given twice), the first is named, and refused as a duplicate.
        free = [n for n in candidates if n not in taken] or candidates
        mapping[i] = free[0]
        taken.add(free[0])
    return mapping


# --- report ----------------------------------------------------------------------------------


@dataclass
class Bucket:
    low: float
    high: float
    n: int = 0
    correct: int = 0
    confidence_sum: float = 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    @property
    def mean_confidence(self) -> float | None:
        return self.confidence_sum / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "confidenceFrom": self.low,
            "confidenceTo": self.high,
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "meanConfidence": self.mean_confidence,
        }


def new_buckets() -> list[Bucket]:
    lows = (0.0, *BUCKET_EDGES[:-1])
    return [Bucket(lo, hi) for lo, hi in zip(lows, BUCKET_EDGES, strict=True)]


def expected_calibration_error(buckets: list[Bucket]) -> float | None:
    """Bucket-weighted |accuracy - mean confidence|; None when nothing was read."""
    n = sum(b.n for b in buckets)
    if not n:
        return None
    return sum(
        b.n / n * abs(b.accuracy - b.mean_confidence)  # type: ignore[operator]
        for b in buckets
        if b.n
    )


@dataclass
class FieldScore:
    n: int = 0  # items whose truth has this field
    exact: int = 0
    missing: int = 0  # truth has it, nothing was read
    spurious: int = 0  # read, but the truth has no such field
    similarity_sum: float = 0.0
    buckets: list[Bucket] = field(default_factory=new_buckets)

    @property
    def accuracy(self) -> float | None:
        return self.exact / self.n if self.n else None

    @property
    def similarity(self) -> float | None:
        return self.similarity_sum / self.n if self.n else None

    @property
    def ece(self) -> float | None:
        return expected_calibration_error(self.buckets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "exact": self.exact,
            "accuracy": self.accuracy,
            "similarity": self.similarity,
            "missing": self.missing,
            "spurious": self.spurious,
            "calibration": [b.to_dict() for b in self.buckets],
            "ece": self.ece,
        }


@dataclass
class MatchScore:
    in_catalog: int = 0
    in_catalog_correct: int = 0
    wrong_album: int = 0  # in catalog, matched another album
    not_matched: int = 0  # in catalog, no match
    not_in_catalog: int = 0
    not_in_catalog_correct: int = 0  # correctly left unmatched
    false_match: int = 0  # not in catalog, matched anyway

    @property
    def accuracy(self) -> float | None:
        n = self.in_catalog + self.not_in_catalog
        return (self.in_catalog_correct + self.not_in_catalog_correct) / n if n else None

    @property
    def precision(self) -> float | None:
        """Of the albums matched, how many were the right one."""
        made = self.in_catalog_correct + self.wrong_album + self.false_match
        return self.in_catalog_correct / made if made else None

    @property
    def recall(self) -> float | None:
        """Of the records in the catalog, how many were matched to the right album."""
        return self.in_catalog_correct / self.in_catalog if self.in_catalog else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
        }


@dataclass
class EvalReport:
    items: int
    results: int
    failed: int
    missing_results: int
    fields: dict[str, FieldScore]
    match: MatchScore
    buckets: list[Bucket]
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def overall(self) -> FieldScore:
        total = FieldScore()
        for f in self.fields.values():
            total.n += f.n
            total.exact += f.exact
            total.missing += f.missing
            total.spurious += f.spurious
            total.similarity_sum += f.similarity_sum
        return total

    @property
    def ece(self) -> float | None:
        """Expected calibration error over every field read."""
        return expected_calibration_error(self.buckets)

    def metrics(self) -> dict[str, Any]:
        """The figures without the per-item details: what the metrics route returns per
        group, and what `scanbatch eval --json` writes beside the details."""
        overall = self.overall.to_dict()
        del overall["calibration"], overall["ece"]  # the report-wide ones below say it
        return {
            "items": self.items,
            "results": self.results,
            "failed": self.failed,
            "missingResults": self.missing_results,
            "fields": {k: v.to_dict() for k, v in self.fields.items()},
            "overall": overall,
            "match": self.match.to_dict(),
            "calibration": [b.to_dict() for b in self.buckets],
            "ece": self.ece,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.metrics(), "details": self.details}

    def format_table(self) -> str:
        def num(v: float | None) -> str:
            return "   -" if v is None else f"{v:.3f}"

        lines = [
            f"{self.items} items, {self.results} results "
            f"({self.failed} failed, {self.missing_results} missing)",
            "",
            f"{'field':<15}{'n':>5}{'exact':>7}{'acc':>8}{'sim':>8}{'missing':>9}{'spurious':>10}",
        ]
        rows = [*self.fields.items(), ("all", self.overall)]
        for name, s in rows:
            lines.append(
                f"{name:<15}{s.n:>5}{s.exact:>7}{num(s.accuracy):>8}{num(s.similarity):>8}"
                f"{s.missing:>9}{s.spurious:>10}"
            )
        m = self.match
        lines += [
            "",
            f"catalog match  {m.in_catalog_correct + m.not_in_catalog_correct}/"
            f"{m.in_catalog + m.not_in_catalog} = {num(m.accuracy)}",
            f"  in catalog      {m.in_catalog_correct}/{m.in_catalog} "
            f"(wrong album {m.wrong_album}, no match {m.not_matched})",
            f"  not in catalog  {m.not_in_catalog_correct}/{m.not_in_catalog} "
            f"(false match {m.false_match})",
            "",
            f"{'confidence':<15}{'n':>5}{'correct':>9}{'acc':>8}{'conf':>8}",
        ]
        for b in self.buckets:
            lines.append(
                f"{b.low:.2f}-{b.high:.2f}{'':<6}{b.n:>5}{b.correct:>9}"
                f"{num(b.accuracy):>8}{num(b.mean_confidence):>8}"
            )
        lines.append(f"ECE {num(self.ece)}")
        return "\n".join(lines)


def _bucket_for(buckets: list[Bucket], confidence: float) -> Bucket:
    for b in buckets:
        if confidence < b.high:
            return b
    return buckets[-1]  # 1.0 (and anything above, defensively) goes in the top bucket


def evaluate(
    truth: Iterable[Mapping[str, Any]],
    outcomes: Iterable[Outcome | ItemOutcome | Mapping[str, Any]],
    *,
    details: bool = True,
) -> EvalReport:
    """Scores `outcomes` (ItemOutcome objects, API result dicts, or what `load_outcomes`
    returns) against `truth` items; `details=False` leaves out the per-item details (the
    metrics route's figures do not show them).
    A truth item without a result counts as read nothing and matched nothing."""
    truth_items = {int(t["itemIndex"]): t for t in truth}
    by_index: dict[int, Outcome] = {}
    for o in map(_outcome, outcomes):
        if o.item_index not in truth_items:
            raise BadRequest(
                f"result for item {o.item_index} has no truth item (truth has items "
                f"{min(truth_items, default=0)}..{max(truth_items, default=-1)}): are the "
                "truth and the results from the same set?"
            )
        by_index.setdefault(o.item_index, o)  # an item's first result, as in the store
    fields = {name: FieldScore() for name in FIELDS}
    match = MatchScore()
    buckets = new_buckets()
    item_details = []
    failed = 0
    for idx in sorted(truth_items):
        t = truth_items[idx]
        o = by_index.get(idx)
        if o is not None and o.status == "failed":
            failed += 1
        extraction = o.extraction if o is not None else {}
        item_detail: dict[str, Any] = {"itemIndex": idx, "status": o.status if o else None}
        for name in FIELDS:
            true = t.get(name)
            true = None if true is None or str(true).strip() == "" else str(true)
            pred, conf = _predicted(extraction, name)
            score = fields[name]
            correct = (
                pred is not None
                and true is not None
                and (normalize(name, pred) == normalize(name, true))
            )
            sim = similarity(name, pred, true) if true is not None and pred is not None else 0.0
            if true is not None:
                score.n += 1
                score.exact += correct
                score.similarity_sum += sim
                score.missing += pred is None
            elif pred is not None:
                score.spurious += 1
            if pred is not None and conf is not None:
                # A value read where the truth has none is a wrong value, confidently or not.
                for b in (_bucket_for(buckets, conf), _bucket_for(score.buckets, conf)):
                    b.n += 1
                    b.correct += correct
                    b.confidence_sum += conf
            if details:
                item_detail[name] = {
                    "true": true,
                    "predicted": pred,
                    "confidence": conf,
                    "exact": correct,
                    "similarity": sim if true is not None else None,
                }
        true_id = t.get("albumId")
        got_id = o.matched_album_id if o is not None else None
        if true_id is not None:
            match.in_catalog += 1
            if got_id == true_id:
                match.in_catalog_correct += 1
            elif got_id is None:
                match.not_matched += 1
            else:
                match.wrong_album += 1
        else:
            match.not_in_catalog += 1
            if got_id is None:
                match.not_in_catalog_correct += 1
            else:
                match.false_match += 1
        if details:
            item_detail["match"] = {
                "true": true_id,
                "predicted": got_id,
                "correct": got_id == true_id,
            }
            item_details.append(item_detail)
    return EvalReport(
        items=len(truth_items),
        results=len(by_index),
        failed=failed,
        missing_results=len(truth_items) - len(by_index),
        fields=fields,
        match=match,
        buckets=buckets,
        details=item_details,
    )
