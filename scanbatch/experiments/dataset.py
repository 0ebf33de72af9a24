"""Reading a dataset folder: the photos, `manifest.json` (the batch manifest, object form) and
`truth.json`. `scanbatch synth` writes this format and the review export writes it too, so a
synthetic set and a golden set are read by the same code.

Photo bytes are hashed once here: the cache keys every request by those hashes."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from scanbatch.errors import BadRequest, PayloadTooLarge
from scanbatch.evaluate import load_truth
from scanbatch.images import detect_mime
from scanbatch.models import DatasetManifest, Photo, ScanContext
from scanbatch.names import FIELDS
from scanbatch.settings import REPO_ROOT, Settings, load_settings
from scanbatch.validation import parse_dataset_manifest

MANIFEST = "manifest.json"
TRUTH = "truth.json"
CHUNK = 1024 * 1024
MAX_BYTES_SETTING = "SCANBATCH_DATASET_MAX_BYTES"
MAX_FILES_SETTING = "SCANBATCH_DATASET_MAX_FILES"


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
    unpacked: Path | None = None  # the private folder a zip was unpacked into, if any

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


def read_manifest(path: Path) -> DatasetManifest:
    """A dataset's manifest.json: any number of items, each checked as a batch item is."""
    try:
        return parse_dataset_manifest(_read_json(path, "manifest"))
    except BadRequest as exc:
        raise BadRequest(f"manifest {path}: {exc.message}") from None


class UnpackLimits(NamedTuple):
    max_bytes: int
    max_files: int

    @classmethod
    def of(cls, settings: Settings) -> UnpackLimits:
        return cls(settings.dataset_max_bytes, settings.dataset_max_files)


def _over(path: Path, what: str, setting: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"dataset zip {path} {what}, more than {setting} allows ({limit:,}): raise {setting} "
        "if the set is really that big; nothing was unpacked"
    )


def _member_parts(path: Path, name: str) -> tuple[str, ...]:
    """The member's path inside the folder, or a BadRequest for one that would land outside
    it (absolute, `..`, a drive, a backslash path: zip-slip)."""
    parts = PurePosixPath(name).parts
    if (
        not parts
        or name.startswith("/")
        or "\\" in name
        or "\0" in name
        or any(part in ("..", ".") or ":" in part for part in parts)
    ):
        raise BadRequest(
            f"dataset zip {path}: member {name!r} points outside the folder; export the "
            "dataset again"
        )
    return parts


def unpack_zip(path: Path, into: Path, limits: UnpackLimits) -> Path:
    """The folder holding the dataset in zip `path` (the review export's download), unpacked
    into `into`, a new empty folder. The member count and the uncompressed size are checked
    from the zip's directory before anything is written, and the size again while writing
    (a directory can lie); members that would land outside `into` are refused."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_files:
                raise _over(
                    path, f"holds {len(infos):,} files", MAX_FILES_SETTING, limits.max_files
                )
            declared = sum(i.file_size for i in infos)
            if declared > limits.max_bytes:
                raise _over(
                    path, f"unpacks to {declared:,} bytes", MAX_BYTES_SETTING, limits.max_bytes
                )
            members = [(info, _member_parts(path, info.filename)) for info in infos]
            written = 0
            for info, parts in members:
                dest = into.joinpath(*parts)
                try:
                    if info.is_dir():
                        dest.mkdir(parents=True, exist_ok=True)
                        continue
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    out = dest.open("xb")  # a member named twice must not overwrite the first
                except (FileExistsError, NotADirectoryError, IsADirectoryError):
                    raise BadRequest(
                        f"dataset zip {path}: member {info.filename!r} clashes with another "
                        "member of the same name; export the dataset again"
                    ) from None
                with zf.open(info) as src, out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > limits.max_bytes:
                            raise _over(
                                path,
                                f"unpacks to more than its directory says ({declared:,} bytes)",
                                MAX_BYTES_SETTING,
                                limits.max_bytes,
                            )
                        out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise BadRequest(f"dataset {path} is not a valid zip file ({exc})") from None
    if (into / MANIFEST).is_file():
        return into
    inner = [p.parent for p in into.glob(f"*/{MANIFEST}")]
    if len(inner) != 1:
        raise BadRequest(
            f"dataset zip {path} must hold one folder with {MANIFEST} and {TRUTH} "
            f"(found {len(inner)})"
        )
    return inner[0]


def load_dataset(
    path: str | Path, *, unpack_into: Path | None = None, limits: UnpackLimits | None = None
) -> Dataset:
    """The dataset in folder `path`, or in a zip of one; a clear BadRequest naming the file and
    field otherwise.

    A zip is unpacked into a new private folder (0700, made by `tempfile.mkdtemp`) inside
    `unpack_into` (an experiment passes its run's folder), by default in the system's
    temporary folder; `Dataset.unpacked` names it, and it is removed again if the dataset is
    refused. Nothing unpacked earlier is ever reused: another process could have put it
    there. `limits` defaults to the settings' (SCANBATCH_DATASET_MAX_BYTES, ..._MAX_FILES)."""
    folder = Path(path)
    if folder.is_file() and folder.suffix.lower() == ".zip":
        limits = limits or UnpackLimits.of(load_settings())
        if unpack_into is not None:
            Path(unpack_into).mkdir(mode=0o700, parents=True, exist_ok=True)
        made = Path(tempfile.mkdtemp(prefix="dataset-", dir=unpack_into))
        try:
            return replace(_load_folder(unpack_zip(folder, made, limits)), unpacked=made)
        except BaseException:
            shutil.rmtree(made, ignore_errors=True)
            raise
    return _load_folder(folder)


def _load_folder(folder: Path) -> Dataset:
    if not folder.is_dir() and not folder.is_absolute() and (REPO_ROOT / folder).is_dir():
        folder = REPO_ROOT / folder  # a notebook runs in notebooks/; paths are the repository's
    if not folder.is_dir():
        raise BadRequest(
            f"dataset {folder} is not a folder: give the folder that holds {MANIFEST} and "
            f"{TRUTH} (e.g. data/sample, or one made by `scanbatch synth --items 20 OUT`)"
        )
    manifest = read_manifest(folder / MANIFEST)
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
