"""Reading a dataset folder: the photos, `manifest.json` (the batch manifest, object form) and
`truth.json`. `scanbatch synth` writes this format and the review export writes it too, so a
synthetic set and a golden set are read by the same code.

Photo bytes are hashed once here: the cache keys every request by those hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scanbatch.errors import BadRequest
from scanbatch.evaluate import FIELDS, load_truth
from scanbatch.images import detect_mime
from scanbatch.models import Manifest, Photo, ScanContext
from scanbatch.settings import REPO_ROOT

MANIFEST = "manifest.json"
TRUTH = "truth.json"


@dataclass(frozen=True)
class DatasetPhoto:
    path: Path
    photo_type: str
    mime_type: str
    sha256: str

    def load(self) -> Photo:
        return Photo(
            data=self.path.read_bytes(), mime_type=self.mime_type, photo_type=self.photo_type
        )


@dataclass(frozen=True)
class DatasetItem:
    index: int
    photos: tuple[DatasetPhoto, ...]
    context: ScanContext | None
    truth: dict[str, Any] = field(repr=False)

    def value(self, name: str) -> str | None:
        """The true value of field `name` (None when the photos do not show it)."""
        v = self.truth.get(name)
        return None if v is None or str(v).strip() == "" else str(v)

    @property
    def album_id(self) -> int | None:
        return self.truth.get("albumId")


@dataclass(frozen=True)
class Dataset:
    path: Path
    items: tuple[DatasetItem, ...]
    meta: dict[str, Any]  # truth.json's keys besides `items` (seed, catalog, ...)

    @cached_property
    def truth_items(self) -> list[dict[str, Any]]:
        """The truth in the shape `scanbatch.evaluate.evaluate` takes."""
        return [item.truth for item in self.items]

    @cached_property
    def fingerprint(self) -> str:
        """A hash of every photo and the truth: equal fingerprints, the same set."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(json.dumps(item.truth, sort_keys=True, default=str).encode())
            for p in item.photos:
                h.update(p.sha256.encode())
        return h.hexdigest()[:16]

    def item(self, index: int) -> DatasetItem:
        for it in self.items:
            if it.index == index:
                return it
        raise KeyError(index)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadRequest(
            f"dataset {path.parent} has no {path.name}: a dataset folder holds the photos, "
            f"{MANIFEST} and {TRUTH} (make one with `scanbatch synth` or the review export)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{what} {path} is not valid JSON: {exc}") from None


def unpack_zip(path: Path, into: Path) -> Path:
    """The folder holding the dataset in zip `path` (the review export's download), unpacked
    once under `into/<hash of the zip>/`. Members that would land outside it are refused."""
    import zipfile

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    target = Path(into) / digest
    done = target / ".unpacked"
    if not done.exists():
        try:
            with zipfile.ZipFile(path) as zf:
                root = target.resolve()
                for member in zf.namelist():
                    dest = (target / member).resolve()
                    if root != dest and root not in dest.parents:
                        raise BadRequest(
                            f"dataset zip {path}: member {member!r} points outside the folder; "
                            "export the dataset again"
                        )
                zf.extractall(target)
        except zipfile.BadZipFile:
            raise BadRequest(f"dataset {path} is not a valid zip file") from None
        done.touch()
    if (target / MANIFEST).is_file():
        return target
    inner = [p.parent for p in target.glob(f"*/{MANIFEST}")]
    if len(inner) != 1:
        raise BadRequest(
            f"dataset zip {path} must hold one folder with {MANIFEST} and {TRUTH} "
            f"(found {len(inner)})"
        )
    return inner[0]


def load_dataset(path: str | Path, *, unpack_into: Path | None = None) -> Dataset:
    """The dataset in folder `path` (or in a zip of one, unpacked under `unpack_into`, by
    default the system's temporary folder); a clear BadRequest naming the file and field
    otherwise."""
    folder = Path(path)
    if folder.is_file() and folder.suffix.lower() == ".zip":
        import tempfile

        into = unpack_into or Path(tempfile.gettempdir()) / "scanbatch-datasets"
        folder = unpack_zip(folder, into)
    if not folder.is_dir() and not folder.is_absolute() and (REPO_ROOT / folder).is_dir():
        folder = REPO_ROOT / folder  # a notebook runs in notebooks/; paths are the repository's
    if not folder.is_dir():
        raise BadRequest(
            f"dataset {folder} is not a folder: give the folder that holds {MANIFEST} and "
            f"{TRUTH} (e.g. data/sample, or one made by `scanbatch synth --items 20 OUT`)"
        )
    raw_manifest = _read_json(folder / MANIFEST, "manifest")
    if isinstance(raw_manifest, list):  # the app's bare-array form
        raw_manifest = {"items": raw_manifest}
    try:
        manifest = Manifest.model_validate(raw_manifest)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadRequest(f"manifest {folder / MANIFEST}: {where}: {err['msg']}") from None
    truth_doc = _read_json(folder / TRUTH, "truth file")
    truth = load_truth(folder / TRUTH)
    meta = (
        {k: v for k, v in truth_doc.items() if k != "items"} if isinstance(truth_doc, dict) else {}
    )
    if len(truth) != len(manifest.items):
        raise BadRequest(
            f"dataset {folder}: {TRUTH} has {len(truth)} items but {MANIFEST} has "
            f"{len(manifest.items)}: they must describe the same records in the same order"
        )
    items = []
    for pos, (t, m) in enumerate(zip(truth, manifest.items, strict=True)):
        names = t.get("photos")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadRequest(
                f"{folder / TRUTH}: items[{pos}].photos must be a list of the item's photo "
                "file names (in the dataset folder)"
            )
        if len(names) != m.image_count or len(m.photo_types) != m.image_count:
            raise BadRequest(
                f"dataset {folder}: item {t['itemIndex']} lists {len(names)} photos in {TRUTH}, "
                f"but {MANIFEST} says imageCount {m.image_count} with "
                f"{len(m.photo_types)} photoTypes: make the three agree"
            )
        photos = []
        for name, photo_type in zip(names, m.photo_types, strict=True):
            p = folder / name
            if Path(name).name != name or not p.is_file():
                raise BadRequest(
                    f"{folder / TRUTH}: items[{pos}].photos names {name!r}, which is not a file "
                    f"in {folder}"
                )
            data = p.read_bytes()
            mime = detect_mime(data[:32])
            if mime is None:
                raise BadRequest(
                    f"dataset photo {p} is not a JPEG, PNG, WebP or HEIC image (the type is "
                    "read from the bytes): replace it or remove the item"
                )
            photos.append(DatasetPhoto(p, photo_type, mime, hashlib.sha256(data).hexdigest()))
        # Only the keys evaluate() reads, plus the photos: the truth a report shows.
        kept = {k: t.get(k) for k in ("itemIndex", *FIELDS, "albumId")}
        items.append(DatasetItem(int(t["itemIndex"]), tuple(photos), m.context, kept))
    if len({i.index for i in items}) != len(items):
        raise BadRequest(f"{folder / TRUTH}: two items share an itemIndex; each must be unique")
    return Dataset(folder, tuple(items), meta)
