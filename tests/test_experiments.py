"""Experiments, the parts that need no extractor: datasets, variants, statistics, prices and
the comparison of a recorded run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from scanbatch.errors import BadRequest, ConfigError
from scanbatch.experiments import (
    DEFAULT_VARIANTS,
    build_extractor,
    load_dataset,
    load_prices,
    mcnemar,
    paired_bootstrap,
    read_variants,
    validate_variants,
)
from scanbatch.experiments.compare import OVERALL, Comparison
from scanbatch.experiments.records import RunRecord
from scanbatch.names import FIELDS
from scanbatch.settings import SHIPPED_DATA, Settings

SAMPLE = SHIPPED_DATA / "sample"


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for var in ("GEMINI_API_KEY", "SCANBATCH_DATA_DIR", "SCANBATCH_GEMINI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return Settings(data_dir=tmp_path / "data", extractor="ocr")


def copy_sample(tmp_path: Path) -> Path:
    out = tmp_path / "set"
    shutil.copytree(SAMPLE, out)
    return out


# --- datasets -----------------------------------------------------------------------------


def test_sample_dataset_is_read_with_types_from_the_bytes():
    ds = load_dataset(SAMPLE)
    assert [i.index for i in ds.items] == list(range(8))
    first = ds.items[0]
    assert [p.photo_type for p in first.photos] == ["front_cover", "sticker", "center_label"]
    assert [p.mime_type for p in first.photos] == ["image/jpeg", "image/jpeg", "image/heic"]
    assert first.value("artistName") == "John Walker-Schmidt"
    assert first.value("upc") is None  # null in the truth: the photos do not show it
    assert len(ds.fingerprint) == 16 and ds.fingerprint == load_dataset(SAMPLE).fingerprint


def test_a_synth_folder_is_read_the_same_way(tmp_path):
    from scanbatch.synth import generate_set

    generate_set(tmp_path / "synth", 2, 5, None, "easy", workers=1)
    ds = load_dataset(tmp_path / "synth")
    assert len(ds.items) == 2 and all(item.photos for item in ds.items)
    assert ds.meta.get("catalog")  # synth names the catalog its records came from


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "truth.json").unlink(), r"has no truth\.json"),
        (lambda d: (d / "manifest.json").write_text("{"), r"manifest .* not valid JSON"),
        (lambda d: (d / "item00_1_sticker.jpg").unlink(), r"items\[0\]\.photos names"),
        (lambda d: (d / "item05_0_front.jpg").write_bytes(b"not an image"), r"is not a JPEG"),
    ],
)
def test_a_broken_dataset_names_the_file_and_the_fix(tmp_path, breakage, message):
    folder = copy_sample(tmp_path)
    breakage(folder)
    with pytest.raises(BadRequest, match=message):
        load_dataset(folder)


def test_a_zipped_export_is_read_like_a_folder(tmp_path):
    import zipfile

    archive = tmp_path / "golden.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in SAMPLE.iterdir():
            zf.write(p, f"golden-set/{p.name}")  # the export holds one folder
    ds = load_dataset(archive, unpack_into=tmp_path / "unpacked")
    assert len(ds.items) == 8 and ds.fingerprint == load_dataset(SAMPLE).fingerprint
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(BadRequest, match="points outside the folder"):
        load_dataset(evil, unpack_into=tmp_path / "unpacked")
    assert not (tmp_path / "outside.txt").exists()


def test_truth_and_manifest_must_agree(tmp_path):
    folder = copy_sample(tmp_path)
    truth = json.loads((folder / "truth.json").read_text())
    truth["items"] = truth["items"][:-1]
    (folder / "truth.json").write_text(json.dumps(truth))
    with pytest.raises(BadRequest, match=r"truth\.json has 7 items but manifest\.json has 8"):
        load_dataset(folder)
    with pytest.raises(BadRequest, match="is not a folder"):
        load_dataset(tmp_path / "nowhere")


def zip_folder(folder: Path, archive: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"golden-set/{p.name}")  # the export holds one folder
    return archive


def test_a_dataset_manifest_is_not_a_batch(tmp_path):
    """12 records (a batch holds 10), 60 photos (a batch holds 50): a dataset."""
    folder = tmp_path / "set"
    make_set(folder, 12, photos=5)
    assert len(load_dataset(folder).items) == 12
    # Each item is still checked as a batch item is, with the same words.
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["items"][11]["imageCount"] = 6
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadRequest, match=r"items\[11\]\.photoTypes has 5 entries but imageCount"):
        load_dataset(folder)
    manifest["items"][11] = {"imageCount": 6, "photoTypes": ["front"] * 6}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadRequest, match=r"items\[11\]\.imageCount must be at most 5, got 6"):
        load_dataset(folder)


def make_set(folder: Path, items: int, photos: int = 1) -> Path:
    """A dataset of `items` records, each with `photos` small distinct JPEGs."""
    from scanbatch.testing.imaging import image_bytes

    folder.mkdir(parents=True)
    manifest, truth = [], []
    for i in range(items):
        names = [f"item{i:03d}_{n}_front_cover.jpg" for n in range(photos)]
        for n, name in enumerate(names):
            colour = f"#{(i * 7 + n * 50) % 256:02x}{i % 256:02x}{i // 256 * 40:02x}"
            (folder / name).write_bytes(image_bytes("JPEG", (16, 16), colour))
        manifest.append({"imageCount": photos, "photoTypes": ["front_cover"] * photos})
        truth.append({"itemIndex": i, "artistName": f"Artist {i}", "albumTitle": f"T{i}",
                      "photos": names, "photoTypes": ["front_cover"] * photos})  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps({"items": manifest}))
    (folder / "truth.json").write_text(json.dumps({"items": truth}))
    return folder


def test_a_golden_set_of_500_records_is_read_and_run(tmp_path, settings):
    """The size of a real golden set, as a folder and as the export's zip, through the fake
    extractor (the point is the size; the offline reader takes ~0.5 s a photo)."""
    import time

    from scanbatch.experiments import run_experiment

    folder = make_set(tmp_path / "set", 500)
    started = time.perf_counter()
    ds = load_dataset(folder)
    seconds = time.perf_counter() - started
    assert [i.index for i in ds.items] == list(range(500))
    assert seconds < 10, f"loading 500 records took {seconds:.1f} s"
    archive = zip_folder(folder, tmp_path / "golden.zip")
    started = time.perf_counter()
    run = run_experiment(archive, [{"extractor": "fake"}], settings=settings, progress=False)
    seconds = time.perf_counter() - started
    assert run.meta["dataset"]["items"] == 500 and len(run.records) == 500
    assert {r["status"] for r in run.records} == {"completed"}
    assert seconds < 60, f"an experiment on 500 records took {seconds:.1f} s"


# --- unpacking a dataset zip: private, fresh, bounded ---------------------------------------


def _nothing_left(settings) -> bool:
    from scanbatch.experiments import experiments_dir

    root = experiments_dir(settings)
    return not root.exists() or not any(root.iterdir())


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("dataset_max_bytes", r"unpacks to {n:,} bytes, more than SCANBATCH_DATASET_MAX_BYTES "
                              r"allows \({m:,}\): raise SCANBATCH_DATASET_MAX_BYTES"),
        ("dataset_max_files", r"holds {n} files, more than SCANBATCH_DATASET_MAX_FILES allows "
                              r"\({m}\): raise SCANBATCH_DATASET_MAX_FILES"),
    ],
)  # fmt: skip
def test_a_zip_over_the_limit_is_refused_and_leaves_nothing(tmp_path, settings, limit, message):
    from scanbatch.errors import PayloadTooLarge
    from scanbatch.experiments import run_experiment

    archive = zip_folder(SAMPLE, tmp_path / "golden.zip")
    files = list(SAMPLE.iterdir())
    n = sum(p.stat().st_size for p in files) if limit == "dataset_max_bytes" else len(files)
    message = message.format(n=n, m=n - 1)
    small = settings.model_copy(update={limit: n - 1})
    with pytest.raises(PayloadTooLarge, match=message):
        run_experiment(archive, [{"extractor": "fake"}], settings=small, progress=False)
    assert _nothing_left(small)
    # The same zip within the limits runs.
    run = run_experiment(archive, [{"extractor": "fake"}], settings=settings, progress=False)
    assert run.meta["dataset"]["items"] == 8


def test_a_zip_whose_directory_understates_its_size_is_refused(tmp_path):
    """The headers say 10 bytes, the member holds 1 MiB: the limit checked from the headers
    passes, so the bytes really written are what counts."""
    import struct
    import zipfile

    from scanbatch.errors import ScanbatchError
    from scanbatch.experiments.dataset import UnpackLimits

    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("set/big.bin", b"\0" * (1 << 20), compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(archive.read_bytes())
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 10)  # uncompressed size, local header
    struct.pack_into("<I", data, central + 24, 10)  # and in the central directory
    archive.write_bytes(bytes(data))
    into = tmp_path / "into"
    with pytest.raises(ScanbatchError, match=r"liar\.zip"):
        load_dataset(archive, unpack_into=into, limits=UnpackLimits(1000, 100))
    assert list(into.iterdir()) == []


@pytest.mark.parametrize("name", ["../outside.txt", "/tmp/abs.txt", "set/../../outside.txt"])
def test_a_member_outside_the_folder_is_refused(tmp_path, name):
    import zipfile

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("set/manifest.json", "{}")
        zf.writestr(zipfile.ZipInfo(name), "x")
    into = tmp_path / "deep" / "into"
    with pytest.raises(BadRequest, match="points outside the folder"):
        load_dataset(evil, unpack_into=into)
    assert list(into.iterdir()) == []  # refused from the directory: nothing was written
    assert not (tmp_path / "deep" / "outside.txt").exists()


def test_each_run_unpacks_into_a_private_folder_of_its_own(tmp_path, settings):
    import hashlib
    import stat

    from scanbatch.experiments import experiments_dir, run_experiment

    archive = zip_folder(SAMPLE, tmp_path / "golden.zip")
    # What an earlier version trusted: the zip's hash under a shared folder, with a marker.
    planted = (
        experiments_dir(settings)
        / "datasets"
        / hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    )
    shutil.copytree(SAMPLE, planted / "golden-set")
    truth = json.loads((planted / "golden-set" / "truth.json").read_text())
    for item in truth["items"]:
        item["artistName"] = "Planted"
    (planted / "golden-set" / "truth.json").write_text(json.dumps(truth))
    (planted / ".unpacked").touch()
    runs = [
        run_experiment(archive, [{"extractor": "fake"}], settings=settings, progress=False)
        for _ in range(2)
    ]
    paths = [Path(r.meta["dataset"]["path"]) for r in runs]
    assert paths[0] != paths[1]
    for run, path in zip(runs, paths, strict=True):
        assert run.truth[0]["artistName"] == "John Walker-Schmidt"  # the zip's, not the plant
        made = path.parent  # the zip holds one folder, inside the folder made for the run
        assert made.parent == run.path
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    # Outside an experiment: a fresh private folder in the system's temporary folder.
    a, b = load_dataset(archive), load_dataset(archive)
    try:
        assert a.unpacked != b.unpacked
        assert stat.S_IMODE(a.unpacked.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(a.unpacked)
        shutil.rmtree(b.unpacked)


# --- variants -----------------------------------------------------------------------------


def test_default_variants_are_two_prompts_on_gemini_and_the_offline_extractor(settings):
    variants = validate_variants(read_variants(None), settings)
    assert [v.label for v in variants] == ["gemini/v1", "gemini/v2", "ocr"]
    assert len(DEFAULT_VARIANTS) == 3


def test_short_specs_and_files(settings, tmp_path):
    vs = read_variants(["ocr", "gemini:v2", "gemini:v1@gemini-2.5-flash"])
    assert [(v.extractor, v.prompt_version, v.model) for v in vs] == [
        ("ocr", None, None),
        ("gemini", "v2", None),
        ("gemini", "v1", "gemini-2.5-flash"),
    ]
    path = tmp_path / "variants.yaml"
    path.write_text(
        "variants:\n  - {extractor: gemini, prompt_version: v2, temperature: 0.7, name: hot}\n"
        "  - {extractor: ocr, options: {max_side: 960}}\n"
    )
    vs = validate_variants(read_variants(path), settings)
    assert [v.label for v in vs] == ["hot", "ocr max_side=960"]
    path = tmp_path / "variants.json"
    path.write_text(json.dumps([{"extractor": "ocr"}]))
    assert read_variants(str(path))[0].extractor == "ocr"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"extractor": "tesseract"}, r"variants\[0\] \(tesseract\)\.extractor: unknown extractor"),
        ({"extractor": "gemini", "prompt_version": "v9"}, r"unknown prompt version 'v9'.*v1, v2"),
        ({"extractor": "ocr", "options": {"colour": 1}}, r"no option 'colour'; its options are"),
        ({"extractor": "ocr", "prompt_version": "v1"}, r"\.prompt_version: the ocr extractor has"),
        ({"extractor": "gemini", "temperature": 5}, r"\.temperature: Input should be less"),
        ({"extractor": "gemini", "options": {"api_key": "x"}}, r"secrets are never variant"),
        ({"extractor": "gemini", "temprature": 0.2}, r"variants\[0\]\.temprature: unknown key"),
        ({"extractor": "ocr", "options": {"max_side": "big"}}, r"\.max_side: Input should be"),
    ],
)
def test_a_bad_variant_is_a_clear_error_before_anything_runs(settings, spec, message):
    with pytest.raises(BadRequest, match=message):
        validate_variants(read_variants([spec]), settings)


def test_two_variants_with_one_name_are_refused(settings):
    with pytest.raises(BadRequest, match=r"variants\[1\] \(ocr\): same name as variants\[0\]"):
        validate_variants(read_variants(["ocr", "ocr"]), settings)
    with pytest.raises(BadRequest, match="non-empty list"):
        read_variants([])


def test_build_extractor_applies_model_prompt_temperature_and_options(settings, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    [gem, ocr] = read_variants(
        [
            {
                "extractor": "gemini",
                "prompt_version": "v2",
                "model": "m-x",
                "temperature": 0.7,
                "options": {"max_timeout_retries": 0},
            },
            {"extractor": "ocr", "options": {"max_side": 960}},
        ]
    )
    ex = build_extractor(gem, settings)
    try:
        assert (ex.options.model, ex.options.prompt_version, ex.options.temperature) == (
            "m-x",
            "v2",
            0.7,
        )
        assert ex.options.max_timeout_retries == 0
        assert "Work in two passes" in ex.system_prompt  # the v2 prompt, not v1
    finally:
        ex.close()
    assert build_extractor(ocr, settings).options.max_side == 960


def test_the_ocr_reader_reads_the_experiments_catalog_never_the_servers(settings):
    """A catalog is handed to an extractor that reads one as it is built: a job's gets the
    settings' snapshot, an experiment's gets the experiment's choice, and "none" is none even
    when the server has a snapshot (which used to stay attached)."""
    import duckdb

    from scanbatch.catalog import CATALOG_MIGRATION_SQL, CatalogMatcher, export_snapshot
    from scanbatch.extractors import create_extractor

    con = duckdb.connect(":memory:")
    con.execute(CATALOG_MIGRATION_SQL)
    con.execute("INSERT INTO catalog_artists VALUES (1, 'name:low', 'Low', 'LOW', 1)")
    con.execute("INSERT INTO catalog_albums (id, artist_id, title) VALUES (5, 1, 'Things')")
    settings.catalog_snapshot.parent.mkdir(parents=True, exist_ok=True)
    export_snapshot(con, settings.catalog_snapshot)
    [ocr] = read_variants(["ocr"])
    server_side = create_extractor("ocr", settings)
    assert server_side.catalog is not None and server_side.catalog.get(5)["album_title"] == "Things"
    assert build_extractor(ocr, settings, None).catalog is None
    own = CatalogMatcher.from_parquet(settings.catalog_snapshot)
    assert build_extractor(ocr, settings, own).catalog is own
    assert not create_extractor("fake", settings).reads_catalog


def test_gemini_without_a_key_cannot_be_built(settings):
    with pytest.raises(ConfigError, match="GEMINI_API_KEY is not set"):
        build_extractor(read_variants(["gemini:v1"])[0], settings)


def test_the_second_prompt_is_a_real_different_prompt():
    v1 = (SHIPPED_DATA / "prompts" / "v1.md").read_text()
    v2 = (SHIPPED_DATA / "prompts" / "v2.md").read_text()
    assert v1 != v2 and len(v2) > 1000
    for name in FIELDS:
        assert name in v2


# --- statistics ---------------------------------------------------------------------------


def test_identical_variants_give_an_interval_of_zero():
    rng = np.random.default_rng(1)
    same = rng.integers(0, 2, 60)
    iv = paired_bootstrap(same, same)
    assert (iv.difference, iv.low, iv.high, iv.n) == (0.0, 0.0, 0.0, 60)
    assert not iv.excludes_zero
    assert mcnemar(list(same == 1), list(same == 1)).p_value == 1.0


def test_constructed_case_interval_contains_the_true_difference():
    # 100 records: the baseline reads 90 right, the candidate the same 90 minus 10 = 80.
    baseline = [1] * 90 + [0] * 10
    candidate = [1] * 80 + [0] * 20
    iv = paired_bootstrap(baseline, candidate)
    assert iv.difference == pytest.approx(-0.10)
    assert iv.low <= -0.10 <= iv.high and iv.high < 0  # 10 regressions, 0 fixes: real
    test = mcnemar([b == 1 for b in baseline], [c == 1 for c in candidate])
    assert (test.only_baseline, test.only_candidate) == (10, 0)
    assert test.p_value == pytest.approx(2 / 2**10)


def test_bootstrap_interval_covers_the_true_difference_about_95_percent_of_the_time():
    # Records drawn with known accuracies 0.85 and 0.75 (true difference -0.10), correlated as
    # two readers of the same photos are; the interval should cover -0.10 in most repetitions.
    rng = np.random.default_rng(7)
    covered = 0
    trials = 200
    for seed in range(trials):
        hard = rng.random(60)
        a = (hard < 0.85).astype(float)
        b = (hard < 0.75).astype(float)
        iv = paired_bootstrap(a, b, resamples=1000, seed=seed)
        covered += iv.low <= -0.10 <= iv.high
    assert covered / trials >= 0.88


def test_bootstrap_weighs_items_by_fields_scored():
    # Item 0 has 3 fields scored, item 1 one: the difference is over 4 fields, not 2 items.
    iv = paired_bootstrap([3, 1], [2, 1], [3, 1])
    assert iv.difference == pytest.approx(-0.25)
    assert paired_bootstrap([], []) is None


def test_verdict_needs_the_interval_and_the_exact_test_to_agree():
    from scanbatch.experiments.compare import PairResult, verdict

    few = paired_bootstrap([1] * 8, [1] * 5 + [0] * 3)  # 8 records, 3 regressions
    many = paired_bootstrap([1] * 80, [1] * 50 + [0] * 30)
    same = paired_bootstrap([1, 0] * 10, [1, 0] * 10)
    pair = PairResult(
        "a",
        "b",
        80,
        {"few": few, "many": many, "same": same, "none": None},
        {
            "few": mcnemar([True] * 8, [True] * 5 + [False] * 3),
            "many": mcnemar([True] * 80, [True] * 50 + [False] * 30),
        },
    )
    assert few.excludes_zero
    assert verdict(pair, "few") == "a looks better; too few records to be sure (p=0.25)"
    assert verdict(pair, "many") == "a better"
    assert verdict(pair, "same") == "no clear difference"
    assert verdict(pair, "none") == "nothing to compare"


def test_mcnemar_exact_p_value():
    # 1 regression, 6 fixes: P(X <= 1 | n=7, 1/2) * 2 = 2 * 8/128
    t = mcnemar([True] + [False] * 6 + [True] * 3, [False] + [True] * 6 + [True] * 3)
    assert (t.only_baseline, t.only_candidate) == (1, 6)
    assert t.p_value == pytest.approx(16 / 128)


# --- prices -------------------------------------------------------------------------------


def test_price_table_is_dated_and_prices_tokens(tmp_path):
    table = load_prices()
    assert table.date and table.currency == "USD"
    cost = table.cost("gemini", "gemini-3-flash-preview", 1_000_000, 1_000_000)
    m = table.models["gemini-3-flash-preview"]
    assert cost == pytest.approx(m["inputPerMillionTokens"] + m["outputPerMillionTokens"])
    assert table.cost("ocr", None, None, None) == 0.0
    assert table.cost("gemini", "gemini-9", 10, 10) is None
    assert 'add "models": {"gemini-9"' in table.missing_note("gemini", "gemini-9")
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps({"models": {}}))
    with pytest.raises(BadRequest, match="needs a `date`"):
        load_prices(bad)
    bad.write_text(json.dumps({"date": "2026-01-01", "models": {"m": {"input": "cheap"}}}))
    with pytest.raises(BadRequest, match="`models` must map names to objects of numbers"):
        load_prices(bad)


# --- comparison of a recorded run ----------------------------------------------------------


def _record(variant, idx, values, *, status="completed", tokens=(1000, 100), cached=False):
    extraction = {k: {"value": v, "confidence": 0.9} for k, v in values.items()}
    return {
        "variant": variant,
        "repeat": 0,
        "itemIndex": idx,
        "status": status,
        "extraction": extraction if status == "completed" else None,
        "matchedAlbumId": None,
        "latencyMs": 100.0 + idx,
        "inputTokens": tokens[0],
        "outputTokens": tokens[1],
        "cached": cached,
        "errorCode": None if status == "completed" else "gemini_rate_limited",
        "errorMessage": None if status == "completed" else "quota",
    }


def test_comparison_matrix_pairs_regressions_and_cost(tmp_path):
    truth = [{"itemIndex": i, "artistName": f"A{i}", "albumTitle": f"T{i}"} for i in range(4)]
    records = []
    for i in range(4):
        records.append(_record("base", i, {"artistName": f"A{i}", "albumTitle": f"T{i}"}))
        wrong = {"artistName": "Nobody" if i < 2 else f"A{i}", "albumTitle": f"T{i}"}
        records.append(_record("cand", i, wrong, cached=i == 3))
    records.append(_record("fail", 0, {}, status="failed"))
    meta = {
        "dataset": {"path": str(tmp_path)},
        "repeat": 1,
        "variants": [
            {
                "name": "base",
                "extractor": "gemini",
                "runnable": True,
                "model": "gemini-3-flash-preview",
            },
            {"name": "cand", "extractor": "gemini", "runnable": True, "model": "no-such-model"},
            {
                "name": "fail",
                "extractor": "gemini",
                "runnable": True,
                "model": "gemini-3-flash-preview",
            },
            {"name": "off", "extractor": "gemini", "runnable": False, "reason": "no key"},
        ],
    }
    c = Comparison(RunRecord(tmp_path / "r", meta, records, truth))
    rows = {r["variant"]: r for r in c.matrix_rows()}
    assert rows["base"]["artistName acc"] == 1.0 and rows["cand"]["artistName acc"] == 0.5
    assert rows["base"][f"{OVERALL} acc"] == 1.0 and rows["cand"][f"{OVERALL} acc"] == 0.75
    assert rows["base"]["latency p50 ms"] == pytest.approx(101.5)
    price = load_prices().models["gemini-3-flash-preview"]
    per_item = (1000 * price["inputPerMillionTokens"] + 100 * price["outputPerMillionTokens"]) / 1e6
    assert rows["base"]["cost/1000 items USD"] == pytest.approx(per_item * 1000)
    assert (
        rows["cand"]["cost/1000 items USD"] is None and "no-such-model" in rows["cand"]["cost note"]
    )
    assert rows["cand"]["from cache"] == 1 and rows["fail"]["failed"] == 1
    assert [v.name for v in c.not_runnable] == ["off"]
    pair = next(p for p in c.pairs if (p.baseline, p.candidate) == ("base", "cand"))
    assert pair.n == 4
    assert pair.intervals["artistName"].difference == pytest.approx(-0.5)
    assert [(r["itemIndex"], r["cand"]) for r in pair.regressions] == [(0, "Nobody"), (1, "Nobody")]
    # the failing variant saw no item completed: no paired items with it
    assert next(p for p in c.pairs if p.candidate == "fail").n == 0
    dis = c.disagreements()
    assert {(d["itemIndex"], d["field"]) for d in dis} >= {(0, "artistName"), (1, "artistName")}
    text = c.format_text()
    assert "not runnable: off: no key" in text
    assert "regressions (right in base, wrong in cand): 2" in text
    assert "fail item 0 (repeat 0): gemini_rate_limited: quota" in text
    with pytest.raises(BadRequest, match="baseline 'off' is not a variant that ran"):
        Comparison(RunRecord(tmp_path / "r", meta, records, truth), baseline="off")


# --- the notebook -------------------------------------------------------------------------


def _experiments_notebook() -> dict:
    from scanbatch.settings import REPO_ROOT

    return json.loads((REPO_ROOT / "notebooks" / "experiments.ipynb").read_text())


def test_the_notebooks_last_cell_is_one_call_to_the_package():
    import ast

    from scanbatch.experiments import notebook

    code = [c for c in _experiments_notebook()["cells"] if c["cell_type"] == "code"]
    last = "".join(code[-1]["source"])
    (statement,) = ast.parse(last).body  # one statement: no logic in the notebook
    assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
    assert hasattr(notebook, statement.value.func.id)


def test_the_notebooks_intro_states_the_rule_the_pairs_table_applies():
    """The intro's "real difference" is the verdict's "better": the interval excludes 0 and
    the exact test's p is below 0.05; the table's two other verdicts are named with it."""
    import importlib
    import inspect

    compare = importlib.import_module("scanbatch.experiments.compare")  # not the function
    intro = " ".join("".join(_experiments_notebook()["cells"][0]["source"]).split())
    rule = inspect.getsource(compare.verdict)
    assert "iv.excludes_zero" in rule and "test.p_value >= 0.05" in rule
    assert "the interval does not include 0 **and** the exact test's p is below 0.05" in intro
    for words in ("looks better; too few records to be sure", "no clear difference"):
        assert words in rule and words in intro, words
