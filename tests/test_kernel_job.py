"""A job as its notebook runs it (scanbatch.kernel_job.BatchJob), in-process: the items start
before the first table is drawn, and the report it writes reads top to bottom (test_server
reads it through HTTP)."""

import time

from scanbatch.catalog import CatalogMatcher
from scanbatch.kernel import open_job
from scanbatch.settings import Settings
from tests.kernel_jobs import make_job


def test_the_report_reads_top_to_bottom(tmp_path, fake_extractor, clean_env, monkeypatch):
    import duckdb

    from scanbatch.catalog import CATALOG_MIGRATION_SQL, export_snapshot

    con = duckdb.connect(":memory:")
    con.execute(CATALOG_MIGRATION_SQL)
    con.execute(
        "INSERT INTO catalog_artists VALUES (1, 'name:cocteau twins', 'Cocteau Twins', 'COC', 12)"
    )
    con.execute(
        "INSERT INTO catalog_albums (id, artist_id, title, label, code_number) "
        "VALUES (7, 1, 'Treasure', '4AD', 3)"
    )
    snapshot = tmp_path / "catalog.parquet"
    export_snapshot(con, snapshot)
    assert CatalogMatcher.from_parquet(snapshot).get(7)["code_letters"] == "COC"
    folder = make_job(
        tmp_path,
        [("Nobody", "Nothing", "fail"), ("Cocteau Twins", "Treasure", ""), ("X", "Y", "crash")],
    )
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-never-shown")
    params = {
        **Settings(data_dir=tmp_path, extractor="fake").kernel_parameters(),
        "job_dir": str(folder.path),
        "catalog_snapshot": str(snapshot),
    }
    job = open_job(params)
    manifest = str(job.manifest_table())
    assert "image/jpeg, image/heic" in manifest and "Cocteau Twins" in manifest
    assert len(job.process()) == 3
    report = str(job.items_report())
    positions = [report.index(f"Item {i}: ") for i in range(3)]
    assert positions == sorted(positions)
    first, second, third = (
        report[positions[0] : positions[1]],
        report[positions[1] : positions[2]],
        report[positions[2] :],
    )
    assert first.count("data:image/jpeg;base64,") == 2  # both photos, as thumbnails
    assert "the fake model refused" in first and "Trying again will not help." in first
    assert "extractor</td><td style='text-align:left'>fake" in second
    assert "Cocteau Twins" in second and "0.90" in second  # a field with its confidence
    assert "Treasure" in second and "COC 12/3" in second and "score" in second
    assert "RuntimeError: fake crash" in third
    summary = str(job.summary())
    assert (
        "1 completed, 2 failed" in summary and "#7 Cocteau Twins – Treasure [COC 12/3]" in summary
    )
    assert "AIza-never-shown" not in manifest + report + summary


def test_items_start_before_the_batch_table_is_drawn(tmp_path, clean_env):
    folder = make_job(tmp_path, [("A", "B", ""), ("C", "D", "")])
    params = {**Settings(data_dir=tmp_path, extractor="fake").kernel_parameters()}
    job = open_job({**params, "job_dir": str(folder.path)})
    job.start()
    # The items run while the notebook does something else: process() only collects them.
    deadline = time.monotonic() + 30
    while (
        len(folder.results_path.read_text().splitlines() if folder.results_path.exists() else [])
        < 2
    ):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert "finished in an earlier run" not in str(job.manifest_table())
    assert sorted(o.item_index for o in job.process()) == [0, 1]
