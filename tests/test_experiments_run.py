"""Experiments end to end: the real google-genai SDK against the fake Gemini on loopback,
answering per prompt version (and per photo) so that variants really differ; the offline
extractor on a one-record set; the cache; the CLI through click's runner; the notebook through
papermill."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanbatch.cli.experiment import experiment
from scanbatch.errors import BadRequest
from scanbatch.experiments import (
    compare,
    execute,
    list_runs,
    load_dataset,
    load_run,
    run_experiment,
)
from scanbatch.experiments.compare import OVERALL
from scanbatch.names import FIELDS
from scanbatch.prompts import load_prompt
from scanbatch.settings import REPO_ROOT, SHIPPED_DATA, Settings
from scanbatch.testing.fake_gemini import (
    FakeGemini,
    RecordedRequest,
    Reply,
    error_reply,
    extraction_reply,
    image_digests,
    malformed_json_reply,
    system_instruction_text,
)

SAMPLE = SHIPPED_DATA / "sample"
V2 = load_prompt(SHIPPED_DATA / "prompts", "v2")
# The fake's v2 reads the artist of these records wrong: v2 regresses on them, nowhere else.
V2_MISREADS = {1, 4, 6}


def truth_responder(dataset: Path):
    """Answers every request with the truth of the record whose first photo it carries; under
    prompt v2, a wrong artist for V2_MISREADS. Model `storm` gets 429s, `garbled` bad JSON."""
    ds = load_dataset(dataset)
    by_photo = {item.photos[0].sha256: item for item in ds.items}

    def respond(request: RecordedRequest) -> Reply:
        if request.model == "storm":
            return error_reply(429, "quota exhausted")
        if request.model == "garbled":
            return malformed_json_reply()
        item = by_photo[image_digests(request.body)[0]]
        fields = {
            name: {"value": item.value(name), "confidence": 0.9}
            for name in FIELDS
            if item.value(name)
        }
        if system_instruction_text(request.body).strip() == V2 and item.index in V2_MISREADS:
            fields["artistName"] = {"value": "Somebody Else", "confidence": 0.6}
        return extraction_reply(fields)

    return respond


@pytest.fixture
def fake():
    with FakeGemini(responder=truth_responder(SAMPLE)) as server:
        yield server


@pytest.fixture
def env(tmp_path, monkeypatch, fake):
    return fake_gemini_env(monkeypatch, tmp_path, fake.base_url)


def fake_gemini_env(monkeypatch, tmp_path: Path, base_url: str) -> Settings:
    """A Gemini key (for the fake only), the fake's URL, a private data dir, fast retries."""
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.setenv("SCANBATCH_GEMINI_BASE_URL", base_url)
    monkeypatch.setenv("SCANBATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SCANBATCH_GEMINI_MAX_RETRIES", "2")
    monkeypatch.setenv("SCANBATCH_GEMINI_RETRY_BASE_DELAY", "0.01")
    monkeypatch.setenv("SCANBATCH_GEMINI_RPM", "10000")
    return Settings()


def one_record_set(tmp_path: Path, index: int = 5) -> Path:
    """Record `index` of the sample alone (item 5 has a single photo: OCR takes ~1 s)."""
    out = tmp_path / f"one{index}"
    out.mkdir()
    truth = json.loads((SAMPLE / "truth.json").read_text())
    manifest = json.loads((SAMPLE / "manifest.json").read_text())
    item = {**truth["items"][index], "itemIndex": 0}
    for name in item["photos"]:
        shutil.copy(SAMPLE / name, out / name)
    (out / "truth.json").write_text(json.dumps({**truth, "items": [item]}))
    (out / "manifest.json").write_text(json.dumps({"items": [manifest["items"][index]]}))
    return out


def test_prompt_versions_really_differ_and_the_difference_is_reported(env, fake):
    run = run_experiment(SAMPLE, ["gemini:v1", "gemini:v2"], settings=env, progress=False)
    assert fake.request_count == 16  # 8 records x 2 variants, one request each
    systems = {system_instruction_text(r.body).strip() for r in fake.requests}
    assert systems == {load_prompt(SHIPPED_DATA / "prompts", "v1"), V2}
    c = compare(run)
    rows = {r["variant"]: r for r in c.matrix_rows()}
    assert rows["gemini/v1"][f"{OVERALL} acc"] == 1.0
    assert rows["gemini/v2"]["artistName acc"] == pytest.approx(5 / 8)
    assert rows["gemini/v2"]["albumTitle acc"] == 1.0
    assert rows["gemini/v1"]["tokens in/item"] == 1200  # the fake's usage metadata
    assert rows["gemini/v1"]["cost/1000 items USD"] > 0
    [pair] = c.pairs
    assert (pair.baseline, pair.candidate, pair.n) == ("gemini/v1", "gemini/v2", 8)
    assert pair.intervals["artistName"].difference == pytest.approx(-3 / 8)
    assert pair.intervals["albumTitle"].low == pair.intervals["albumTitle"].high == 0.0
    assert sorted(r["itemIndex"] for r in pair.regressions) == sorted(V2_MISREADS)
    assert all(r["field"] == "artistName" for r in pair.regressions)
    assert {d["itemIndex"] for d in c.disagreements()} == V2_MISREADS
    # the run's record: settings, prompt hash, per item and field value and confidence
    meta = json.loads((run.path / "run.json").read_text())
    v2 = next(v for v in meta["variants"] if v["name"] == "gemini/v2")
    assert v2["promptVersion"] == "v2" and len(v2["promptSha256"]) == 64
    assert "api_key" not in json.dumps(meta) and "test-key" not in json.dumps(meta)
    line = json.loads((run.path / "records.jsonl").read_text().splitlines()[0])
    assert {"variant", "repeat", "itemIndex", "extraction", "latencyMs", "inputTokens"} <= set(line)
    assert not (env.data_dir / "scanbatch.duckdb").exists()  # never the server's store


def test_a_rerun_is_answered_from_the_cache(env, fake):
    first = run_experiment(SAMPLE, ["gemini:v1", "gemini:v2"], settings=env, progress=False)
    before = fake.request_count
    again = run_experiment(SAMPLE, ["gemini:v1", "gemini:v2"], settings=env, progress=False)
    assert fake.request_count == before  # 0 new requests
    assert all(r["cached"] for r in again.records) and len(again.records) == 16
    assert compare(again).matrix_rows() != [] and [
        r[f"{OVERALL} acc"] for r in compare(again).matrix_rows()
    ] == [r[f"{OVERALL} acc"] for r in compare(first).matrix_rows()]
    rows = compare(again).matrix_rows()
    assert all(r["paid this run USD"] == 0 for r in rows)
    # another temperature is another request: no stale answers
    run_experiment(
        SAMPLE,
        [{"extractor": "gemini", "prompt_version": "v1", "temperature": 0.9}],
        settings=env,
        progress=False,
    )
    assert fake.request_count == before + 8


def test_repeat_asks_again_and_is_cached_per_repeat(env, fake):
    run = run_experiment(SAMPLE, ["gemini:v1"], settings=env, repeat=2, progress=False)
    assert fake.request_count == 16
    assert sorted({r["repeat"] for r in run.records}) == [0, 1]
    rows = compare(run).matrix_rows()
    assert rows[0]["acc range over repeats"] == 0.0
    run_experiment(SAMPLE, ["gemini:v1"], settings=env, repeat=2, progress=False)
    assert fake.request_count == 16


def test_a_failing_variant_shows_errors_per_item_and_does_not_stop_the_others(env, fake):
    run = run_experiment(
        SAMPLE,
        ["gemini:v1", "gemini:v1@storm", "gemini:v1@garbled"],
        settings=env,
        progress=False,
    )
    c = compare(run)
    by_variant: dict[str, set[str]] = {}
    for e in c.errors():
        by_variant.setdefault(e["variant"], set()).add(e["errorCode"])
    assert by_variant == {
        "gemini/v1@storm": {"gemini_rate_limited"},
        "gemini/v1@garbled": {"gemini_invalid_json"},
    }
    assert sum(1 for e in c.errors() if e["variant"] == "gemini/v1@storm") == 8
    rows = {r["variant"]: r for r in c.matrix_rows()}
    assert rows["gemini/v1"][f"{OVERALL} acc"] == 1.0 and rows["gemini/v1"]["failed"] == 0
    assert rows["gemini/v1@storm"]["failed"] == 8
    assert "gemini/v1@storm item 0 (repeat 0): gemini_rate_limited" in c.format_text()
    # failures are not cached: the next run asks again
    before = fake.request_count
    run_experiment(SAMPLE, ["gemini:v1@garbled"], settings=env, progress=False)
    assert fake.request_count > before


def test_an_unforeseen_failure_is_that_items_error(env, fake, monkeypatch):
    from scanbatch.experiments.catalog import CatalogChoice

    class BrokenMatcher:  # a bug outside the extractor, where nothing expects one
        def __len__(self):
            return 0

        def match(self, context, extraction):
            raise RuntimeError("matcher bug")

    monkeypatch.setattr(
        execute, "choose_catalog", lambda *a, **k: CatalogChoice(BrokenMatcher(), "broken", None)
    )
    run = run_experiment(SAMPLE, ["gemini:v1"], settings=env, progress=False)
    assert len(run.records) == 8
    assert {(r["status"], r["errorCode"]) for r in run.records} == {("failed", "internal_error")}
    assert "RuntimeError: matcher bug" in run.records[0]["errorMessage"]


def test_validation_fails_before_any_request_or_record(env, fake):
    with pytest.raises(BadRequest, match=r"variants\[1\] \(gemini/v7\)\.prompt_version"):
        run_experiment(SAMPLE, ["gemini:v1", "gemini:v7"], settings=env, progress=False)
    assert fake.request_count == 0
    assert not (env.data_dir / "experiments").exists()


def test_without_a_key_gemini_is_not_runnable_and_the_offline_extractor_runs(
    env, fake, tmp_path, monkeypatch
):
    monkeypatch.delenv("GEMINI_API_KEY")
    notices: list[str] = []
    dataset = one_record_set(tmp_path)
    run = run_experiment(
        dataset, None, settings=Settings(), progress=False, on_notice=notices.append
    )
    assert len(notices) == 2
    assert notices[0] == (
        "variant gemini/v1: not runnable here: GEMINI_API_KEY is not set: export your Gemini "
        "API key as GEMINI_API_KEY (https://aistudio.google.com/apikey), or set "
        "SCANBATCH_EXTRACTOR=ocr to extract offline"
    )
    assert notices[1].startswith("variant gemini/v2: not runnable here: GEMINI_API_KEY")
    assert fake.request_count == 0
    c = compare(run)
    assert [v.name for v in c.runnable] == ["ocr"]
    [row] = c.matrix_rows()
    assert row["results"] == 1 and row["failed"] == 0
    assert row["artistName acc"] == 1.0  # the one-photo record reads right offline
    assert row["cost/1000 items USD"] == 0.0


def test_past_runs_are_listed_and_compared_again(env, fake):
    run_experiment(SAMPLE, ["gemini:v1"], settings=env, name="first", progress=False)
    run_experiment(SAMPLE, ["gemini:v2"], settings=env, name="second", progress=False)
    runs = list_runs(env.data_dir / "experiments")
    assert {r["run"] for r in runs} == {"first", "second"}
    again = load_run(env.data_dir / "experiments", "first")
    assert compare(again).matrix_rows()[0]["variant"] == "gemini/v1"
    # A run recorded before its records were named records.jsonl reads the same.
    older = env.data_dir / "experiments" / "second"
    (older / "records.jsonl").rename(older / "results.jsonl")
    assert load_run(env.data_dir / "experiments", "second").records
    with pytest.raises(BadRequest, match="run 'first' already exists"):
        run_experiment(SAMPLE, ["gemini:v1"], settings=env, name="first", progress=False)


# --- the CLI ------------------------------------------------------------------------------


def test_cli_runs_lists_and_compares(env, fake, tmp_path):
    runner = CliRunner()
    out_json = tmp_path / "matrix.json"
    result = runner.invoke(
        experiment,
        [
            "run",
            str(SAMPLE),
            "--variant",
            "gemini:v1",
            "--variant",
            "gemini:v2",
            "--name",
            "cli",
            "--no-progress",
            "--json",
            str(out_json),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "gemini/v1" in result.output and "artistName acc" in result.output
    assert "gemini/v2 vs gemini/v1" in result.output and "[" in result.output
    assert "regressions (right in gemini/v1, wrong in gemini/v2): 3" in result.output
    doc = json.loads(out_json.read_text())
    assert doc["pairs"][0]["intervals"]["artistName"]["difference"] == pytest.approx(-3 / 8)
    listed = runner.invoke(experiment, ["list"])
    assert listed.exit_code == 0 and "cli" in listed.output
    again = runner.invoke(experiment, ["compare", "cli", "--baseline", "gemini/v2"])
    assert again.exit_code == 0, again.output
    assert "gemini/v1 vs gemini/v2" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", str(SAMPLE), "--variant", "tesseract"], "unknown extractor 'tesseract'"),
        (["run", "/nowhere", "--variant", "ocr"], "is not a folder"),
        (["compare", "nope"], "no experiment run 'nope'"),
        (["run", str(SAMPLE), "--variant", "ocr", "--repeat", "0"], "--repeat"),
    ],
)
def test_cli_bad_input_is_one_clear_line(env, args, message):
    result = CliRunner().invoke(experiment, args)
    assert result.exit_code in (1, 2)  # click: 1 for our errors, 2 for usage errors
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- the notebook -------------------------------------------------------------------------


def run_notebook(out: Path, parameters: dict) -> None:
    """notebooks/experiments.ipynb through papermill, as a headless run does, into `out`."""
    import papermill

    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "experiments.ipynb"),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(REPO_ROOT),
        progress_bar=False,
    )


@pytest.mark.slow
def test_notebook_runs_headless_with_dataset_and_variants(env, fake, tmp_path):
    import nbformat

    out = tmp_path / "experiments.ipynb"
    run_notebook(
        out,
        {
            "dataset": str(SAMPLE),
            "variants": [{"extractor": "gemini", "prompt_version": "v1"}, "gemini:v2"],
            "run_name": "nb",
        },
    )
    assert fake.request_count == 16
    nb = nbformat.read(out, as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "gemini/v2 vs gemini/v1" in text  # the pairwise table
    # 3 regressions in 8 records: the interval excludes 0 but McNemar's p is 0.25
    assert "gemini/v1 looks better; too few records to be sure (p=0.25)" in text
    assert "no clear difference" in text  # the other fields
    assert "Somebody Else" in text and "data:image/jpeg;base64" in text  # regressions + photos
    assert "prices as of" in text
    assert "test-key" not in out.read_text()  # the key never reaches the notebook
    assert (env.data_dir / "experiments" / "nb" / "run.json").is_file()


def test_any_registered_extractor_is_a_variant(env, fake):
    # The test entry points register `fake` (echoes the app's context) and `fake-broken`
    # (cannot start).
    notices: list[str] = []
    run = run_experiment(
        SAMPLE,
        ["gemini:v1", "fake", "fake-broken"],
        settings=env,
        progress=False,
        on_notice=notices.append,
    )
    assert notices == [
        "variant fake-broken: not runnable here: fake-broken cannot start: FAKE_SETTING is missing"
    ]
    c = compare(run)
    rows = {r["variant"]: r for r in c.matrix_rows()}
    assert rows["fake"]["results"] == 8 and rows["fake"]["failed"] == 0
    assert rows["fake"][f"{OVERALL} acc"] == 0.0  # the sample has no context to echo
    assert rows["fake"]["cost note"].startswith('no price for fake: add "extractors": {"fake"')
    pair = c.pairs[0]
    assert (pair.baseline, pair.candidate) == ("gemini/v1", "fake")
    assert verdict_of(pair) == "gemini/v1 better"


def verdict_of(pair) -> str:
    from scanbatch.experiments.compare import verdict

    return verdict(pair, OVERALL)


# --- datasets bigger than one batch (10 records): a dataset is not a batch --------------------


def test_cli_runs_an_experiment_on_a_synth_set_of_12(env, tmp_path):
    from scanbatch.cli import cli

    runner = CliRunner()
    out = tmp_path / "set"
    made = runner.invoke(cli, ["synth", "--items", "12", "--seed", "3", "--workers", "1", str(out)])
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        cli, ["experiment", "run", str(out), "--variant", "fake", "--no-progress", "--name", "s12"]
    )
    assert result.exit_code == 0, result.output
    run = load_run(env.data_dir / "experiments", "s12")
    assert run.meta["dataset"]["items"] == 12 and len(run.records) == 12
    assert "12 items" in result.output


def test_a_golden_set_export_of_12_records_runs(env, tmp_path):
    """The review export's own writer (`scanbatch.golden_set`), as GET /library/scan/review/dataset
    streams it, for more reviewed records than one batch holds."""
    from datetime import UTC, datetime

    from scanbatch.audit import ReviewView
    from scanbatch.golden_set import dataset_entries, zip_stream
    from scanbatch.store.reviews import ReviewedItem

    sample = load_dataset(SAMPLE)
    items, photos = [], []
    for n in range(12):
        src = sample.items[n % len(sample.items)]
        review = ReviewView.model_construct(
            reviewer="dir", reviewed_at=datetime.now(UTC), note=None
        )
        truth = {k: v for k, v in src.truth.items() if k != "itemIndex"}
        outcome = {"itemIndex": 0, "status": "completed", "extraction": {}, "matchedAlbumId": None}
        items.append(ReviewedItem(f"job{n // 10}", n % 10, outcome, truth,
                                  [p.photo_type for p in src.photos], None, review))  # fmt: skip
        photos.append([p.path for p in src.photos])
    archive = tmp_path / "golden.zip"
    with archive.open("wb") as fh:
        for chunk in zip_stream(dataset_entries(items, photos)):
            fh.write(chunk)
    run = run_experiment(archive, ["fake"], settings=env, progress=False, name="golden")
    assert run.meta["dataset"]["items"] == 12 and len(run.records) == 12
    assert [t["artistName"] for t in run.truth][8] == sample.items[0].value("artistName")


@pytest.mark.slow
def test_notebook_runs_headless_on_24_records(env, tmp_path):
    import nbformat

    from tests.test_experiments import make_set

    dataset = make_set(tmp_path / "set24", 24)
    out = tmp_path / "experiments.ipynb"
    run_notebook(out, {"dataset": str(dataset), "variants": ["fake"], "run_name": "nb24"})
    run = load_run(env.data_dir / "experiments", "nb24")
    assert run.meta["dataset"]["items"] == 24 and len(run.records) == 24
    text = json.dumps([c.get("outputs", []) for c in nbformat.read(out, as_version=4).cells])
    assert "failed records: 0" in text
