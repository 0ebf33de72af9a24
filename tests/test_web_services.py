"""The web services seam (scanbatch.web.services): views reach the app's services one way,
call the store's methods (never its SQL connection, never the runner's insides), and the web
modules import each other without a cycle."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask

from scanbatch.models import Status
from scanbatch.web import create_app, prepare, shutdown, start
from scanbatch.web.services import Services, attach, services, services_of

WEB = Path(__file__).resolve().parents[1] / "scanbatch" / "web"
MODULES = sorted(f"scanbatch.web.{p.stem}" for p in WEB.glob("*.py") if p.stem != "__init__")


def sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(WEB.glob("*.py"))}


def test_the_web_modules_reach_no_sql_and_no_runner_insides():
    sql = {
        name: found
        for name, text in sources().items()
        if (found := re.findall(r"\.db\b|\bcursor\(|\.execute\(", text))
    }
    assert sql == {}, "a view calls a store method instead (store.reviews, store.catalog)"
    # The catalog snapshot is the runner's: a view asks Services.catalog_snapshot().
    insides = [n for n, text in sources().items() if "runner.snapshot" in text]
    assert insides == ["services.py"]


def test_only_services_py_touches_the_extension():
    touching = [
        name
        for name, text in sources().items()
        if name != "services.py" and re.search(r"""extensions\s*\[\s*["']scanbatch["']""", text)
    ]
    assert touching == []
    assert not any("def _services" in text for text in sources().values())


def imports_of(path: Path) -> set[str]:
    """The scanbatch.web modules `path` imports, at run time or for type checking alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "scanbatch.web":
                found |= {f"scanbatch.web.{a.name}" for a in node.names}
            elif node.module.startswith("scanbatch.web."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("scanbatch.web.")}
    return found & set(MODULES)


def test_the_web_modules_import_each_other_without_a_cycle():
    graph = {f"scanbatch.web.{p.stem}": imports_of(p) for p in WEB.glob("*.py")}
    graph = {m: deps for m, deps in graph.items() if m in MODULES}
    cycles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for dep in sorted(graph[module]):
            visit(dep, [*path, module])
        done.add(module)

    for module in MODULES:
        visit(module, [])
    assert cycles == []
    assert graph["scanbatch.web.services"] == set()  # everything may import it


def test_each_web_module_imports_first_in_a_fresh_interpreter():
    # Each first, then the others in reverse: no order depends on another module's imports.
    procs = {
        module: subprocess.Popen(
            [
                sys.executable,
                "-c",
                "; ".join(f"import {m}" for m in [module, *reversed(MODULES)]),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for module in MODULES
    }
    failed = {m: p.communicate(timeout=120)[0] for m, p in procs.items()}
    assert {m: out for m, out in failed.items() if procs[m].returncode} == {}


def test_services_are_attached_once_and_found_from_the_app_and_the_request(settings):
    app = create_app(settings)
    try:
        svc = services_of(app)
        assert isinstance(svc, Services) and svc.settings == settings
        with app.test_request_context("/"):
            assert services() is svc
        with pytest.raises(RuntimeError, match="has its services already"):
            attach(app, svc)
    finally:
        shutdown(app)
    with pytest.raises(KeyError):
        services_of(Flask("other"))


def test_create_app_builds_and_starts_nothing(settings):
    """The factory opens the store and makes the runner; seeding the catalog and starting the
    runner are the explicit steps after it (`prepare`, `start`)."""
    app = create_app(settings)
    try:
        svc = services_of(app)
        assert svc.store.catalog.is_empty()
        assert svc.catalog_snapshot() is None
        assert not svc.runner.running and svc.runner.pool.ready == 0
        prepare(app)
        assert not svc.store.catalog.is_empty()
        assert svc.catalog_snapshot() == settings.catalog_snapshot
    finally:
        shutdown(app)


@pytest.mark.slow
def test_start_is_what_runs_the_jobs(settings):
    """A job submitted to an app that was only built and prepared stays pending; `start(app)`
    resumes it (the runner's recovery) and runs it."""
    from scanbatch.testing.servers import keys
    from tests.test_web_api import post
    from tests.webutil import batch_files

    app = create_app(settings)
    try:
        prepare(app)
        svc = services_of(app)
        token = keys(svc.store)["director"]
        r = post(app.test_client(), token, *batch_files(1))
        assert r.status_code == 202, r.get_json()
        job_id = r.get_json()["jobId"]
        time.sleep(0.5)
        assert svc.store.get_job(job_id).status is Status.PENDING
        start(app)
        deadline = time.monotonic() + 180
        while not svc.store.get_job(job_id).status.finished:
            assert time.monotonic() < deadline, "the job did not finish after start"
            time.sleep(0.2)
        assert svc.store.get_job(job_id).completed_items == 1
    finally:
        shutdown(app)
