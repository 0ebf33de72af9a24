import json
import subprocess
import sys
from pathlib import Path

import pytest

from scanbatch.cli import main
from scanbatch.store import JobStore
from tests.imaging import image_bytes


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANBATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("SCANBATCH_EXTRACTOR", raising=False)
    return tmp_path


def test_keys_create_prints_the_token_alone_once(env, capsys):
    assert main(["keys", "create", "--user", "alice", "--role", "musicDirector"]) == 0
    token = capsys.readouterr().out
    assert token.count("\n") == 1 and token.startswith("sb_")
    store = JobStore.open(env / "data" / "scanbatch.duckdb")
    try:
        assert store.authenticate(token.strip()).user_id == "alice"
    finally:
        store.close()
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "alice" in listing and "musicDirector" in listing
    assert token.strip() not in listing
    key_id = listing.splitlines()[1].split()[0]
    assert main(["keys", "revoke", key_id]) == 0
    assert main(["keys", "revoke", key_id]) == 1
    assert "No active API key" in capsys.readouterr().err


def test_bad_arguments_are_one_line_and_exit_2(env, capsys):
    with pytest.raises(SystemExit) as info:
        main(["keys", "create", "--user", "a", "--role", "admin"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice: 'admin'" in err


def test_bad_setting_names_the_variable(env, monkeypatch, capsys):
    monkeypatch.setenv("SCANBATCH_ITEM_CONCURRENCY", "lots")
    assert main(["keys", "list"]) == 1
    assert "SCANBATCH_ITEM_CONCURRENCY" in capsys.readouterr().err


def test_help_explains_each_command(env, capsys):
    for argv in (["--help"], ["run", "--help"], ["keys", "create", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--manifest" in out and "printed once" in out


def write_batch(tmp_path, scripts):
    manifest = [
        {
            "imageCount": 1,
            "photoTypes": ["front"],
            "context": {"artistName": f"A{i}", "stickerText": s},
        }
        for i, s in enumerate(scripts)
    ]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    images = []
    for i in range(len(scripts)):
        path = tmp_path / f"p{i}.png"
        path.write_bytes(image_bytes("PNG"))
        images.append(str(path))
    return [str(tmp_path / "m.json"), *images]


def test_run_processes_a_batch_and_prints_the_status_json(env, capsys):
    manifest, *images = write_batch(env, ["", "fail", ""])
    code = main(["run", "--extractor", "fake", "--manifest", manifest, *images])
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert code == 0
    assert job["status"] == "completed"
    assert (job["completedItems"], job["failedItems"]) == (2, 1)
    assert [r["status"] for r in job["results"]] == ["completed", "failed", "completed"]
    assert job["results"][0]["extraction"]["artistName"]["value"] == "A0"
    assert "items" in err  # the progress bar went to stderr
    assert (env / "data" / "jobs" / job["jobId"] / "results.jsonl").exists()
    # The same path as the server's: the job ran through the processing notebook.
    executed = json.loads(
        (env / "data" / "jobs" / job["jobId"] / "process_batch.ipynb").read_text()
    )
    outputs = json.dumps(executed["cells"])
    assert "Item 1: failed" in outputs and "the fake model refused" in outputs


def test_run_refuses_a_bad_setting_before_creating_the_job(env, capsys, monkeypatch):
    manifest, *images = write_batch(env, [""])
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert main(["run", "--extractor", "gemini", "--manifest", manifest, *images]) == 1
    assert "GEMINI_API_KEY is not set" in capsys.readouterr().err
    assert not (env / "data" / "jobs").exists() or not any((env / "data" / "jobs").iterdir())


def test_run_rejects_a_bad_manifest_with_the_station_message(env, capsys):
    manifest, *images = write_batch(env, ["", ""])
    assert main(["run", "--extractor", "fake", "--manifest", manifest, images[0]]) == 1
    assert (
        "Image count mismatch: 1 files uploaded but manifest expects 2" in capsys.readouterr().err
    )
    assert not (env / "data" / "jobs").exists() or not any((env / "data" / "jobs").iterdir())


def test_run_with_a_missing_file_is_exit_2(env, capsys):
    assert main(["run", "--extractor", "fake", "--manifest", str(env / "nope.json"), "x.jpg"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "scanbatch"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "keys" in result.stdout
