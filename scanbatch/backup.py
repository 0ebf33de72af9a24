"""Backups of a data folder, taken while the server works, and their restore.

An archive is a tar file: `store/<table>.parquet` for every table of the store, taken in one
read transaction (DuckDB's MVCC: ingest and review saves go on meanwhile, and the archive holds
exactly what was committed when the backup began), with `--photos` the job folders
(`jobs/<jobId>/...`, without thumbnails: they are made again on demand), and `manifest.json`,
written last: an archive cut short has none, so it can never pass for a whole one.

Nothing in the store names a path of the data folder (job folders are found from the job id,
the catalog snapshot is exported again by the server), so a restore onto another machine or
folder rewrites nothing.

Restore goes into an empty data folder only, through a staging folder inside it: the store is
made there at the backup's schema version, loaded parents first, migrated to this code's
version and checked (scanbatch.store.check); only then are the store and job folders renamed
into place, so a failed restore leaves the folder as it found it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from scanbatch import __version__, server_file
from scanbatch.diskspace import disk_full_guard
from scanbatch.errors import BadRequest, Conflict, Unprocessable
from scanbatch.jobfolder import PID_FILE, THUMBNAILS
from scanbatch.private import DIR_MODE, FILE_MODE, private_dir, private_file
from scanbatch.settings import Settings
from scanbatch.store import JobStore
from scanbatch.store.check import check_rows, check_store
from scanbatch.store.db import Database
from scanbatch.store.migrations import _migrations

FORMAT = "scanbatch-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STORE = "store"
JOBS = "jobs"
CHUNK = 1024 * 1024
# Staging folders of a backup or a restore under way, inside the data folder (private, on the
# disk the data is on); a killed process leaves one behind: `remove_abandoned` takes it away.
BACKUP_PREFIX = ".backup-"
RESTORE_PREFIX = ".restore-"
# Not archived: made again when needed (thumbnails), or only true of the process that wrote it.
NOT_ARCHIVED = frozenset({THUMBNAILS, PID_FILE})
_TABLE = re.compile(r"[a-z_][a-z0-9_]*")
TAR_BLOCK = tarfile.BLOCKSIZE


class BackupError(BadRequest):
    """An archive that cannot be restored (not ours, damaged, cut short)."""


def schema_version() -> int:
    """The newest schema this code knows."""
    return max(m.version for m in _migrations())


def store_tables(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """The store's tables, every parent before the tables that reference it (foreign keys),
    so they load in this order."""
    names = [
        row[0]
        for row in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary "
            "AND database_name = current_database() AND schema_name = 'main' ORDER BY table_name"
        ).fetchall()
    ]
    parents: dict[str, set[str]] = {name: set() for name in names}
    for child, parent in cur.execute(
        "SELECT table_name, referenced_table FROM duckdb_constraints() "
        "WHERE constraint_type = 'FOREIGN KEY' AND database_name = current_database()"
    ).fetchall():
        if child in parents and parent != child:
            parents[child].add(parent)
    ordered: list[str] = []
    while parents:
        ready = sorted(n for n, p in parents.items() if not p - set(ordered))
        ordered.extend(ready)
        for name in ready:
            del parents[name]
    return ordered


def _literal(path: Path) -> str:
    """A path as a SQL string literal (COPY takes no prepared parameter for its file)."""
    return "'" + str(path).replace("'", "''") + "'"


# -- taking a backup --------------------------------------------------------------------------


@dataclass
class Backup:
    """One archive being made: the store's tables already written to `workdir` (taken when
    the backup began), then `chunks()` streams the tar. `close()` removes `workdir`; the
    stream does it when it ends or is abandoned."""

    workdir: Path
    jobs_dir: Path
    photos: bool
    manifest: dict[str, Any]
    job_ids: list[str] = field(default_factory=list)
    _on_close: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)

    @classmethod
    def take(cls, store: JobStore, settings: Settings, *, photos: bool) -> Backup:
        private_dir(settings.data_dir)
        # The copy is on the data folder's disk: full, it is a 507 naming it, and goes.
        with disk_full_guard(settings.data_dir):
            workdir = Path(tempfile.mkdtemp(prefix=BACKUP_PREFIX, dir=settings.data_dir))
            try:
                (workdir / STORE).mkdir(mode=DIR_MODE)
                with store.db.snapshot() as cur:
                    # The first statement fixes the snapshot every COPY below reads.
                    (version,) = cur.execute(
                        "SELECT max(version) FROM schema_migrations"
                    ).fetchone()
                    rows = {}
                    for table in store_tables(cur):
                        target = workdir / STORE / f"{table}.parquet"
                        cur.execute(
                            f'COPY (SELECT * FROM "{table}") TO {_literal(target)} (FORMAT parquet)'
                        )
                        (rows[table],) = cur.execute(f'SELECT count(*) FROM "{table}"').fetchone()
                    job_ids = [
                        str(r[0]) for r in cur.execute("SELECT id FROM scan_jobs").fetchall()
                    ]
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
        manifest = {
            "format": FORMAT,
            "formatVersion": FORMAT_VERSION,
            "createdAt": datetime.now(UTC).isoformat(),
            "scanbatchVersion": __version__,
            "schemaVersion": version,
            "tables": rows,
            "photos": photos,
        }
        return cls(workdir, settings.jobs_dir, photos, manifest, job_ids)

    @property
    def records(self) -> int:
        return self.manifest["tables"].get("scan_results", 0)

    @property
    def reviews(self) -> int:
        return self.manifest["tables"].get("scan_reviews", 0)

    def chunks(self) -> Iterator[bytes]:
        """The tar, a chunk at a time (never a whole file in memory)."""
        try:
            digests: dict[str, str] = {}
            for path in sorted((self.workdir / STORE).iterdir()):
                yield from _member(f"{STORE}/{path.name}", path, digests)
            self.manifest["sha256"] = digests
            if self.photos:
                files: dict[str, int] = {}
                for job_id in self.job_ids:
                    files[job_id] = 0
                    for name, path in _folder_entries(self.jobs_dir / job_id, f"{JOBS}/{job_id}"):
                        if path is None:
                            yield _header(name, 0, datetime.now(UTC).timestamp(), directory=True)
                            continue
                        sent = False
                        for chunk in _member(name, path):
                            sent = True
                            yield chunk
                        files[job_id] += sent
                self.manifest["jobFiles"] = files
            body = json.dumps(self.manifest, indent=1).encode()
            yield from _member_bytes(MANIFEST, body)
            yield b"\0" * (2 * TAR_BLOCK)  # the end of the archive
        finally:
            self.close()

    def write(self, path: Path) -> int:
        """The archive written to `path` (which must not be its final name: see the CLI);
        its size in bytes."""
        size = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            for chunk in self.chunks():
                fh.write(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        return size

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, when the archive is done with (sent, or abandoned)."""
        self._on_close.append(callback)

    def close(self) -> None:
        """Remove the copy of the store (once: the stream's end and the server both close)."""
        if self._closed:
            return
        self._closed = True
        try:
            for callback in self._on_close:  # first: whoever sees the copy gone may go on
                callback()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _folder_entries(folder: Path, name: str) -> Iterator[tuple[str, Path | None]]:
    """(member name, path) of each file of a job folder to archive, and (member name, None)
    of the folder and each folder in it, before what it holds (an empty `images/` is restored
    too). A folder or file removed meanwhile (the job deleted after the snapshot) is skipped."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return
    yield name, None
    for entry in entries:
        if entry.name in NOT_ARCHIVED:
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _folder_entries(Path(entry.path), f"{name}/{entry.name}")
        elif entry.is_file(follow_symlinks=False):
            yield f"{name}/{entry.name}", Path(entry.path)


def _header(name: str, size: int, mtime: float, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = DIR_MODE if directory else FILE_MODE
    if directory:
        info.type = tarfile.DIRTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % TAR_BLOCK)


def _member(name: str, path: Path, digests: dict[str, str] | None = None) -> Iterator[bytes]:
    """One file as a tar member: its size is the file's when opened (a file only appended to
    meanwhile, like results.jsonl, is archived as it was then); nothing if it is gone. With
    `digests`, its SHA-256 is put there under `name` (the store's files: Parquet does not
    always notice a damaged byte)."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below; a generator holds it)
    except FileNotFoundError:
        return
    with fh:
        stat = os.fstat(fh.fileno())
        yield _header(name, stat.st_size, stat.st_mtime)
        left = stat.st_size
        digest = hashlib.sha256()
        while left:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:  # cannot happen to our files (never truncated): fail, do not lie
                raise OSError(f"{path} shrank while it was archived")
            left -= len(chunk)
            digest.update(chunk)
            yield chunk
        yield _padding(stat.st_size)
        if digests is not None:
            digests[name] = digest.hexdigest()


def _member_bytes(name: str, data: bytes) -> Iterator[bytes]:
    yield _header(name, len(data), datetime.now(UTC).timestamp())
    yield data
    yield _padding(len(data))


def remove_abandoned(data_dir: Path) -> None:
    """Staging folders a killed backup or restore left in the data folder."""
    with contextlib.suppress(FileNotFoundError):
        for entry in Path(data_dir).iterdir():
            if entry.is_dir() and entry.name.startswith((BACKUP_PREFIX, RESTORE_PREFIX)):
                shutil.rmtree(entry, ignore_errors=True)


# -- restoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    jobs: int
    records: int
    reviews: int
    photos: bool
    schema_from: int
    schema_to: int


def restore(archive: Path, settings: Settings) -> Restored:
    """The archive's store and job folders put in `settings.data_dir`, which must be empty;
    on any failure the folder is left as it was."""
    archive = Path(archive)
    data_dir = settings.data_dir
    _require_empty(settings)
    if not archive.is_file():
        raise BackupError(f"{archive} is not a file: give the path of a backup archive")
    made_data_dir = not data_dir.exists()
    private_dir(data_dir)
    staging = Path(tempfile.mkdtemp(prefix=RESTORE_PREFIX, dir=data_dir))
    placed: list[Path] = []
    try:
        manifest = _extract(archive, staging)
        store = staging / settings.store_path.name
        try:
            _check_digests(staging, manifest)
            _load(store, staging / STORE, manifest)
            _check_photos(staging / JOBS, manifest)
        except BackupError as exc:
            raise BackupError(f"{archive}: {exc.message}: nothing was restored") from None
        jobs = staging / JOBS
        if jobs.is_dir():
            with contextlib.suppress(FileNotFoundError):
                settings.jobs_dir.rmdir()  # empty (checked): replaced by the archive's
            os.rename(jobs, settings.jobs_dir)
            placed.append(settings.jobs_dir)
        os.rename(store, settings.store_path)
        placed.append(settings.store_path)
    except BaseException:
        for path in placed:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        if made_data_dir:
            with contextlib.suppress(OSError):
                data_dir.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    tables = manifest["tables"]
    return Restored(
        jobs=tables.get("scan_jobs", 0),
        records=tables.get("scan_results", 0),
        reviews=tables.get("scan_reviews", 0),
        photos=bool(manifest.get("photos")),
        schema_from=manifest["schemaVersion"],
        schema_to=schema_version(),
    )


def _require_empty(settings: Settings) -> None:
    data_dir = settings.data_dir
    running = server_file.read(data_dir)
    # A server holds its store: without one, server.json is left from a server gone (and its
    # pid may be another process's now).
    if running is not None and settings.store_path.exists() and _alive(running.pid):
        raise Conflict(
            f"A server (pid {running.pid}, {running.url}) is running on {data_dir}: a restore "
            "never goes under a running server. Stop it, or restore into another folder "
            "(SCANBATCH_DATA_DIR) and start a server there."
        )
    held = [
        p.name
        for p in (
            settings.store_path,
            settings.store_path.with_name(settings.store_path.name + ".wal"),
        )
        if p.exists()
    ]
    if settings.jobs_dir.is_dir() and any(settings.jobs_dir.iterdir()):
        held.append(f"{settings.jobs_dir.name}/ (job folders)")
    if held:
        raise Conflict(
            f"{data_dir} is not empty: it holds {', '.join(held)}. A restore never mixes with "
            "a store: restore into an empty folder (set SCANBATCH_DATA_DIR to a new one), or "
            "move this folder away first."
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _member_ok(name: str, *, directory: bool = False) -> bool:
    parts = name.split("/")
    if directory:  # a job folder or a folder in it
        return len(parts) >= 2 and parts[0] == JOBS and _member_ok(name + "/-")
    if name == MANIFEST:
        return True
    if len(parts) == 2 and parts[0] == STORE:
        return parts[1].endswith(".parquet") and bool(
            _TABLE.fullmatch(parts[1][: -len(".parquet")])
        )
    if len(parts) >= 3 and parts[0] == JOBS and all(p not in ("", ".", "..") for p in parts):
        try:
            return str(uuid.UUID(parts[1])) == parts[1]
        except ValueError:
            return False
    return False


def _extract(archive: Path, staging: Path) -> dict[str, Any]:
    """The archive unpacked into `staging` (every file private); its manifest, checked."""

    def only_ours(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        ours = (member.isfile() and _member_ok(member.name)) or (
            member.isdir() and _member_ok(member.name, directory=True)
        )
        if not ours:
            raise BackupError(
                f"{archive} holds {member.name!r}, which no scanbatch backup holds: it is not "
                "one (or was changed): restore a file `scanbatch backup` wrote"
            )
        member = tarfile.data_filter(member, dest)
        return member.replace(mode=DIR_MODE if member.isdir() else FILE_MODE, deep=False)

    try:
        with tarfile.open(archive, "r|") as tar:
            tar.extractall(staging, filter=only_ours)
    except BackupError:
        raise
    except (tarfile.TarError, EOFError) as exc:  # an OSError is the disk's: it goes up as is
        raise BackupError(
            f"{archive} is not a whole scanbatch backup ({exc}): it is damaged or was cut "
            "short; restore another, or take the backup again"
        ) from None
    for root, dirs, _files in os.walk(staging):
        for d in dirs:
            os.chmod(os.path.join(root, d), DIR_MODE)
    path = staging / MANIFEST
    if not path.is_file():
        raise BackupError(
            f"{archive} has no {MANIFEST} (written last): the backup was cut short; take it again"
        )
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise BackupError(f"{archive}: its {MANIFEST} is not JSON: take the backup again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a scanbatch backup (its {MANIFEST} says otherwise)")
    version = manifest.get("schemaVersion")
    if not isinstance(version, int) or not isinstance(manifest.get("tables"), dict):
        raise BackupError(f"{archive}: its {MANIFEST} has no schemaVersion or tables")
    if version > schema_version():
        raise Unprocessable(
            f"{archive} was taken by a newer scanbatch (store schema {version}; this one knows "
            f"up to {schema_version()}): restore it with that version or later"
        )
    if manifest.get("formatVersion") != FORMAT_VERSION:
        raise Unprocessable(
            f"{archive} is a backup of format {manifest.get('formatVersion')}; this scanbatch "
            f"reads format {FORMAT_VERSION}: restore it with the version that wrote it"
        )
    return manifest


def _load(store: Path, tables_dir: Path, manifest: dict[str, Any]) -> None:
    """The store made at the backup's schema, its tables loaded, migrated to this code's
    schema and checked; a BackupError listing every problem."""
    expected: dict[str, int] = manifest["tables"]
    db = Database(store, target=manifest["schemaVersion"])
    try:
        with db.write() as cur:
            order = store_tables(cur)
            unknown = sorted(set(expected) - set(order))
            if unknown:
                raise BackupError(
                    f"the backup holds tables this store schema has not: {', '.join(unknown)}"
                )
            # The backup's own record of its migrations replaces the one just made.
            cur.execute("DELETE FROM schema_migrations")
            for table in order:
                if table not in expected:
                    continue
                path = tables_dir / f"{table}.parquet"
                if not path.is_file():
                    raise BackupError(f"the backup has no {STORE}/{table}.parquet: take it again")
                cur.execute(
                    f'INSERT INTO "{table}" BY NAME SELECT * FROM read_parquet({_literal(path)})'
                )
            problems = check_rows(cur, expected)
        if problems:
            raise BackupError(
                "the restored store does not match the backup: " + "; ".join(problems)
            )
        db.migrate()
        problems = check_store(db.cursor())
        if problems:
            raise BackupError(
                "the restored store fails its consistency check: " + "; ".join(problems)
            )
    except duckdb.Error as exc:
        raise BackupError(f"the backup's tables could not be loaded: {exc}") from None
    finally:
        db.close()
    private_file(store)


def _check_digests(staging: Path, manifest: dict[str, Any]) -> None:
    """The store's files are the bytes the backup wrote."""
    digests = manifest.get("sha256")
    if not isinstance(digests, dict):
        raise BackupError(f"its {MANIFEST} has no sha256 of the store's files")
    for name, expected in digests.items():
        path = staging / name
        if not _member_ok(name) or not path.is_file():
            raise BackupError(f"it lacks {name}, which its {MANIFEST} lists")
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise BackupError(f"{name} is damaged (its SHA-256 is not the one the backup wrote)")


def _check_photos(jobs: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest says a job folder had is there."""
    files = manifest.get("jobFiles") or {}
    short = []
    for job_id, n in files.items():
        folder = jobs / job_id
        found = sum(len(f) for _r, _d, f in os.walk(folder)) if folder.is_dir() else 0
        if found != n:
            short.append(f"{job_id} ({found} of {n})")
    if short:
        raise BackupError(
            f"job folders miss files the backup lists: {', '.join(short[:5])}"
            + (f" and {len(short) - 5} more" if len(short) > 5 else "")
        )


def read_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of a written archive (the CLI reports from it), or a BackupError."""
    try:
        with tarfile.open(archive, "r:") as tar:
            member = tar.getmember(MANIFEST)
            fh = tar.extractfile(member)
            assert fh is not None
            return json.loads(fh.read())
    except (tarfile.TarError, KeyError, ValueError, EOFError) as exc:
        raise BackupError(f"{archive} is not a whole scanbatch backup ({exc})") from None
