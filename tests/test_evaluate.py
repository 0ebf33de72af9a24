"""`evaluate` on a hand-built case; every number below was worked out by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from scanbatch.cli import cli
from scanbatch.errors import BadRequest
from scanbatch.evaluate import evaluate, load_outcomes, load_truth, normalize
from scanbatch.jobfolder import ResultsWriter
from scanbatch.models import ItemOutcome, Status

TRUTH = {
    "items": [
        {"itemIndex": 0, "artistName": "Björk", "albumTitle": "Homogenic",
         "labelName": "One Little Indian", "catalogNumber": "TPLP 71", "reviewText": "great",
         "upc": "075596205515", "albumId": 5},
        {"itemIndex": 1, "artistName": "The Raincoats", "albumTitle": "Odyshape",
         "labelName": "Rough Trade", "catalogNumber": "ROUGH 13", "reviewText": None,
         "upc": None, "albumId": 7},
        {"itemIndex": 2, "artistName": "Ruth Quinn", "albumTitle": "Paper Moons",
         "labelName": None, "catalogNumber": None, "reviewText": None, "upc": None,
         "albumId": None},
    ]
}  # fmt: skip


def f(value: str, confidence: float) -> dict[str, Any]:
    return {"value": value, "confidence": confidence}


RESULTS = [
    {"itemIndex": 0, "status": "completed", "matchedAlbumId": 5, "extraction": {
        "artistName": f("bjork", 0.95),  # accents and case do not count
        "albumTitle": f("Homogenic!", 0.85),  # nor punctuation
        "labelName": f("One Little Indain", 0.6),  # a typo: wrong, similarity 32/34
        "catalogNumber": f("TPLP-71", 0.92),  # separators do not count
        "upc": f("0075596205515", 0.99),  # UPC-A reported as EAN-13
    }},
    {"itemIndex": 1, "status": "completed", "matchedAlbumId": 9, "extraction": {
        "artistName": f("The Raincoats", 0.9),
        "albumTitle": f("Odyshape", 0.75),
        "catalogNumber": f("RO 5/3", 0.4),  # the library code: wrong, similarity 6/11
        "upc": f("123", 0.3),  # the truth has no UPC: spurious
    }},
    {"itemIndex": 2, "status": "failed", "matchedAlbumId": None, "extraction": None},
]  # fmt: skip


def check_report(d: dict[str, Any]) -> None:
    # Per-field calibration is checked in test_per_field_calibration_and_match_precision.
    fields = {
        name: {k: v for k, v in f.items() if k not in ("calibration", "ece")}
        for name, f in d["fields"].items()
    }
    assert fields["artistName"] == {
        "n": 3, "exact": 2, "accuracy": pytest.approx(2 / 3), "similarity": pytest.approx(2 / 3),
        "missing": 1, "spurious": 0,
    }  # fmt: skip
    assert fields["albumTitle"]["exact"] == 2 and fields["albumTitle"]["missing"] == 1
    assert fields["labelName"]["n"] == 2 and fields["labelName"]["exact"] == 0
    assert fields["labelName"]["missing"] == 1
    assert fields["labelName"]["similarity"] == pytest.approx((32 / 34) / 2)
    assert fields["catalogNumber"]["exact"] == 1
    assert fields["catalogNumber"]["similarity"] == pytest.approx((1 + 6 / 11) / 2)
    assert fields["reviewText"] == {
        "n": 1, "exact": 0, "accuracy": 0.0, "similarity": 0.0, "missing": 1, "spurious": 0,
    }  # fmt: skip
    assert fields["upc"]["exact"] == 1 and fields["upc"]["spurious"] == 1
    overall = d["overall"]
    assert (overall["n"], overall["exact"], overall["missing"], overall["spurious"]) == (
        12, 6, 4, 1)  # fmt: skip
    assert d["match"] == {
        "in_catalog": 2, "in_catalog_correct": 1, "wrong_album": 1, "not_matched": 0,
        "not_in_catalog": 1, "not_in_catalog_correct": 1, "false_match": 0,
        "accuracy": pytest.approx(2 / 3), "precision": 0.5, "recall": 0.5,
    }  # fmt: skip
    buckets = [(b["n"], b["correct"], b["meanConfidence"]) for b in d["calibration"]]
    assert buckets == [
        (2, 0, pytest.approx(0.35)),  # 0.4 and 0.3, both wrong
        (1, 0, pytest.approx(0.6)),
        (1, 1, pytest.approx(0.75)),
        (1, 1, pytest.approx(0.85)),
        (4, 4, pytest.approx(0.94)),  # 0.95, 0.92, 0.99, 0.9 (1.0's bucket includes 0.9)
    ]
    # (2*0.35 + 0.6 + 0.25 + 0.15 + 4*0.06) / 9
    assert d["ece"] == pytest.approx(1.94 / 9)
    assert (d["items"], d["results"], d["failed"], d["missingResults"]) == (3, 3, 1, 0)


def test_hand_built_case() -> None:
    report = evaluate(TRUTH["items"], RESULTS)
    check_report(report.to_dict())
    assert report.to_dict()["details"][1]["catalogNumber"]["predicted"] == "RO 5/3"
    table = report.format_table()
    assert "artistName         3      2   0.667   0.667        1         0" in table
    assert "catalog match  2/3 = 0.667" in table


def test_normalisation() -> None:
    assert normalize("artistName", "  Sigur  Rós! ") == normalize("artistName", "sigur ros")
    assert normalize("catalogNumber", "MRG-567") == normalize("catalogNumber", "mrg 567")
    assert normalize("upc", "0 36000 29145 2") == "036000291452"
    assert normalize("upc", "0036000291452") == "036000291452"
    assert normalize("upc", "4006381333931") == "4006381333931"  # a real EAN-13 stays


def _jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    for r in RESULTS:
        writer.append(ItemOutcome(
            item_index=r["itemIndex"], status=Status(r["status"]), extraction=r["extraction"],
            matched_album_id=r["matchedAlbumId"], finished_at=datetime.now(UTC),
        ))  # fmt: skip
    return path


def test_results_jsonl_job_folder_and_status_json_agree(tmp_path: Path) -> None:
    jsonl = _jsonl(tmp_path)
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"jobId": "x", "status": "completed", "results": RESULTS}))
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(TRUTH))
    for source in (jsonl, tmp_path, status):
        check_report(evaluate(load_truth(truth), load_outcomes(source)).to_dict())


def test_result_without_truth_item_is_refused() -> None:
    with pytest.raises(BadRequest, match="result for item 3 has no truth item"):
        evaluate(TRUTH["items"], [{"itemIndex": 3, "status": "completed"}])


def test_bad_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"itemIndex": "x"}\n{"itemIndex": 1}\n')
    with pytest.raises(BadRequest, match=r"bad\.jsonl is neither a job status JSON"):
        load_outcomes(bad)
    with pytest.raises(BadRequest, match=r"truth file .*nope\.json does not exist"):
        load_truth(tmp_path / "nope.json")


def test_cli_prints_table_and_writes_json(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(TRUTH))
    out = tmp_path / "report" / "eval.json"
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", str(truth), str(_jsonl(tmp_path)), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "catalog match  2/3" in result.stdout
    check_report(json.loads(out.read_text()))
    assert runner.invoke(cli, ["eval", str(truth)]).exit_code == 2


def test_per_field_calibration_and_match_precision():
    truth = [
        {"itemIndex": 0, "artistName": "Can", "albumTitle": "Tago Mago", "albumId": 1},
        {"itemIndex": 1, "artistName": "Neu!", "albumTitle": "Neu!", "albumId": None},
    ]
    read = [
        {
            "itemIndex": 0,
            "extraction": {
                "artistName": {"value": "CAN", "confidence": 0.95},
                "albumTitle": {"value": "Tago Mago", "confidence": 0.6},
            },
            "matchedAlbumId": 1,
        },
        {
            "itemIndex": 1,
            "extraction": {"artistName": {"value": "Nev", "confidence": 0.95}},
            "matchedAlbumId": 7,
        },
    ]
    m = evaluate(truth, read).metrics()
    artist = m["fields"]["artistName"]
    top = artist["calibration"][-1]
    assert (top["confidenceFrom"], top["confidenceTo"], top["n"], top["correct"]) == (
        0.9, 1.0, 2, 1)  # fmt: skip
    assert artist["ece"] == pytest.approx(0.45)  # |0.5 - 0.95|
    title = m["fields"]["albumTitle"]
    assert title["ece"] == pytest.approx(0.4)  # one right at 0.6
    assert m["ece"] == pytest.approx((2 * 0.45 + 0.4) / 3)
    # One match right, one false match: precision 1/2; the one in-catalog record found.
    assert (m["match"]["precision"], m["match"]["recall"]) == (0.5, 1.0)
    assert "details" not in m


def test_several_jobs_of_one_dataset_score_as_the_one_job(tmp_path: Path) -> None:
    """The same three results split into two jobs (2 + 1 items) as `scanbatch run` prints
    them: the second job's item 0 is the dataset's item 2, and the report is the same."""
    from scanbatch.evaluate import load_dataset_outcomes

    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(TRUTH))
    last = {**RESULTS[2], "itemIndex": 0}
    doc = {"jobs": [
        {"firstItem": 0, "jobId": "a", "totalItems": 2, "results": RESULTS[:2]},
        {"firstItem": 2, "jobId": "b", "totalItems": 1, "results": [last]},
    ]}  # fmt: skip
    jobs_json = tmp_path / "jobs.json"
    jobs_json.write_text(json.dumps(doc))
    jobs = load_dataset_outcomes(truth, [jobs_json])
    check_report(evaluate(load_truth(truth), [o for j in jobs for o in j.outcomes]).to_dict())
    with pytest.raises(BadRequest, match="holds 2 jobs, each numbering its items from 0"):
        load_outcomes(jobs_json)
    doc["jobs"][1]["firstItem"] = 1  # overlaps the first job's item 1
    jobs_json.write_text(json.dumps(doc))
    with pytest.raises(BadRequest, match=r"dataset item 1 has results from .* give each job once"):
        load_dataset_outcomes(truth, [jobs_json])


def test_an_item_written_twice_counts_with_its_first_line_as_in_the_store(tmp_path: Path) -> None:
    """A run that raced a resumed one can leave a second line for an item: the store keeps the
    first, and so do `scanbatch eval` and `evaluate` (which used to refuse the folder, or count
    the last line)."""
    from scanbatch.evaluate import load_dataset_outcomes

    jsonl = _jsonl(tmp_path)
    ResultsWriter(jsonl).append(ItemOutcome(
        item_index=0, status=Status.FAILED, error_code="late", error_message="late",
        finished_at=datetime.now(UTC),
    ))  # fmt: skip
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(TRUTH))
    jobs = load_dataset_outcomes(truth, [jsonl])
    outcomes = [o for j in jobs for o in j.outcomes]
    assert len(outcomes) == 3
    check_report(evaluate(load_truth(truth), outcomes).to_dict())
    both = [*RESULTS, {**RESULTS[0], "status": "failed", "extraction": None}]
    check_report(evaluate(TRUTH["items"], both).to_dict())
