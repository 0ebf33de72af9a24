"""schemathesis against a real server on loopback, driven by the server's own /openapi.json:
every documented operation with generated valid and invalid inputs, as a musicDirector, a dj,
a stationManager and with no token. No 5xx, every status, content type, body and header as
documented (so every error is the JSON error shape). Bounded examples and a fixed seed keep
it reproducible and within a few minutes on 2 cores."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scanbatch.store import JobStore
from scanbatch.testing.servers import ServerProcess
from tests.fuzz_hooks import HOSTILE

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)
MAX_EXAMPLES = 15
SEED = 13


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("fuzz") / "data"
    store = JobStore.open(data / "scanbatch.duckdb")
    try:
        tokens = {
            role: store.keys.create(f"fuzz-{role}", role)[1]
            for role in ("musicDirector", "dj", "stationManager")
        }
    finally:
        store.close()
    srv = ServerProcess(data).start()
    yield srv, tokens
    srv.stop()


@pytest.mark.slow
@pytest.mark.parametrize("role", ["musicDirector", "dj", "stationManager", None])
def test_schemathesis_finds_nothing(server, role, tmp_path):
    srv, tokens = server
    auth = ["-H", f"Authorization: Bearer {tokens[role]}"] if role else []
    log = tmp_path / "hostile.jsonl"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{srv.url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
            *auth,
        ],
        cwd=tmp_path,  # its report folder, if any, stays out of the repository
        # Non-ASCII digits and very long numbers in every integer parameter (tests/fuzz_hooks.py)
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
            "SCANBATCH_FUZZ_LOG": str(log),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary
    # Every generated case passed every check ("N generated, N passed"), and there were some.
    counts = re.search(r"(\d+) generated, (\d+) passed\n", summary)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 100, summary
    # The hostile numbers really went out, each of them, to the routes that take numbers, and
    # came back as a refusal (a 400 naming the parameter; 401/403/404 before it is read).
    sent = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(sent) >= 30, sent
    values = {v for line in sent for v in line["values"].values()}
    assert values == {v[:12] for v in HOSTILE}, values
    operations = {line["operation"].split("/items/")[0].split("?")[0] for line in sent}
    assert len(operations) >= 3, operations
    assert {line["status"] for line in sent} <= {400, 401, 403, 404}, sent
