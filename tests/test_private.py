"""The data folder is private to the server's account: the store, every job folder and what is
in it (photos, results, the executed notebook, thumbnails), the logs."""

import stat
from pathlib import Path

import pytest
import requests

from scanbatch.store import JobStore
from scanbatch.testing.servers import ServerProcess, bearer, keys
from tests.test_server import submit

pytestmark = pytest.mark.slow


def loose(root: Path) -> list[str]:
    """Every path under `root` that another account could read, with its mode."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {oct(mode)}")
    return found


def test_a_servers_data_folder_is_private_to_its_account(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # as an earlier version, or a person, left it
    store = JobStore.open(data / "scanbatch.duckdb")
    tokens = keys(store)
    store.close()
    server = ServerProcess(data).start()
    try:
        r = submit(server, tokens["director"], ["", ""])
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        assert server.wait_finished(job_id, tokens["director"])["status"] == "completed"
        photo = f"{server.url}/library/scan/batch/{job_id}/items/0/photos/0?size=320"
        assert requests.get(photo, headers=bearer(tokens["director"]), timeout=30).ok
        notebook = f"{server.url}/library/scan/batch/{job_id}/notebook"
        assert requests.get(notebook, headers=bearer(tokens["director"]), timeout=30).ok
    finally:
        server.stop()
    job_dir = data / "jobs" / job_id
    assert (job_dir / "thumbnails").is_dir() and (job_dir / "results.jsonl").is_file()
    assert loose(data) == []


def test_the_store_is_private_whoever_opens_it(tmp_path):
    store = JobStore.open(tmp_path / "d" / "scanbatch.duckdb")
    store.close()
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "d" / "scanbatch.duckdb").stat().st_mode) == 0o600
