import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import requests
from click.testing import CliRunner

from scanbatch.cli import cli, main
from scanbatch.store import JobStore
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import ServerProcess

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANBATCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("SCANBATCH_EXTRACTOR", raising=False)
    return tmp_path


@pytest.fixture
def runner():
    return CliRunner()


def test_keys_create_prints_the_token_alone_once(env, runner):
    result = runner.invoke(cli, ["keys", "create", "--user", "alice", "--role", "musicDirector"])
    assert result.exit_code == 0, result.output
    token = result.stdout
    assert token.count("\n") == 1 and token.startswith("sb_")
    store = JobStore.open(env / "data" / "scanbatch.duckdb")
    try:
        assert store.keys.authenticate(token.strip()).user_id == "alice"
    finally:
        store.close()
    listing = runner.invoke(cli, ["keys", "list"]).stdout
    assert "alice" in listing and "musicDirector" in listing
    assert token.strip() not in listing
    key_id = listing.splitlines()[1].split()[0]
    assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 0
    again = runner.invoke(cli, ["keys", "revoke", key_id])
    assert again.exit_code == 1
    assert again.stderr.startswith("scanbatch: error: No active API key")


def test_bad_arguments_are_a_usage_error_exit_2(env, runner):
    result = runner.invoke(cli, ["keys", "create", "--user", "a", "--role", "admin"])
    assert result.exit_code == 2
    assert "Invalid value for '--role'" in result.stderr and "'admin'" in result.stderr
    assert main(["keys", "create", "--user", "a", "--role", "admin"]) == 2


def test_bad_setting_names_the_variable(env, monkeypatch, runner):
    monkeypatch.setenv("SCANBATCH_ITEM_CONCURRENCY", "lots")
    result = runner.invoke(cli, ["keys", "list"])
    assert result.exit_code == 1 and "SCANBATCH_ITEM_CONCURRENCY" in result.stderr
    # --help still works with a broken environment.
    assert runner.invoke(cli, ["keys", "list", "--help"]).exit_code == 0


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [(), *(p for p, _ in _commands(cli))], ids=" ".join)
def test_every_command_has_help(env, runner, path):
    result = runner.invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: cli {' '.join(path)}".rstrip() + " ")
    cmd = cli
    for name in path:
        cmd = cmd.commands[name]
    assert cmd.help and len(cmd.help) > 20  # a sentence, not a placeholder


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


def test_run_processes_a_batch_and_prints_the_status_json(env, runner):
    manifest, *images = write_batch(env, ["", "fail", ""])
    result = runner.invoke(cli, ["run", "--extractor", "fake", "--manifest", manifest, *images])
    job = json.loads(result.stdout)
    assert result.exit_code == 0
    assert job["status"] == "completed"
    assert (job["completedItems"], job["failedItems"]) == (2, 1)
    assert [r["status"] for r in job["results"]] == ["completed", "failed", "completed"]
    assert job["results"][0]["extraction"]["artistName"]["value"] == "A0"
    assert "items" in result.stderr  # the progress bar went to stderr
    assert (env / "data" / "jobs" / job["jobId"] / "results.jsonl").exists()
    # The same path as the server's: the job ran through the processing notebook.
    executed = json.loads(
        (env / "data" / "jobs" / job["jobId"] / "process_batch.ipynb").read_text()
    )
    outputs = json.dumps(executed["cells"])
    assert "Item 1: failed" in outputs and "the fake model refused" in outputs
    # Private to this account, as the server's own (the kernel's files included).
    from tests.test_private import loose

    assert loose(env / "data") == []


def test_run_refuses_a_bad_setting_before_creating_the_job(env, capsys, monkeypatch):
    manifest, *images = write_batch(env, [""])
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert main(["run", "--extractor", "gemini", "--manifest", manifest, *images]) == 1
    assert "GEMINI_API_KEY is not set" in capsys.readouterr().err
    assert not (env / "data" / "jobs").exists() or not any((env / "data" / "jobs").iterdir())


def test_run_rejects_a_bad_manifest_with_the_station_message(env, runner):
    manifest, *images = write_batch(env, ["", ""])
    result = runner.invoke(cli, ["run", "--extractor", "fake", "--manifest", manifest, images[0]])
    assert result.exit_code == 1
    assert "Image count mismatch: 1 files uploaded but manifest expects 2" in result.stderr
    assert not (env / "data" / "jobs").exists() or not any((env / "data" / "jobs").iterdir())


def test_run_with_a_missing_file_or_unknown_extractor_is_exit_2(env, runner):
    result = runner.invoke(cli, ["run", "--manifest", str(env / "nope.json"), "x.jpg"])
    assert result.exit_code == 2 and "no such file" in result.stderr
    result = runner.invoke(cli, ["run", "--extractor", "nope", "--manifest", "m", "x.jpg"])
    assert result.exit_code == 2 and "'nope' is not one of" in result.stderr


def test_catalog_generate_usage_error(env, runner):
    result = runner.invoke(cli, ["catalog", "generate", "--albums", "3", "--import"])
    assert result.exit_code == 2 and "--import needs --out" in result.stderr
    result = runner.invoke(cli, ["catalog", "generate", "--albums", "3", "--seed", "1"])
    assert result.exit_code == 0 and result.stdout.count("\n") == 4  # header + 3 albums


def test_catalog_import_stats_and_snapshot_use_the_store(env, runner):
    csv = env / "catalog.csv"
    made = runner.invoke(cli, ["catalog", "generate", "--albums", "12", "--out", str(csv)])
    assert made.exit_code == 0, made.output
    imported = runner.invoke(cli, ["catalog", "import", str(csv)])
    assert imported.exit_code == 0 and "12 added" in imported.stdout, imported.output
    snapshot = env / "data" / "catalog.parquet"
    snapshot.unlink()
    stats = runner.invoke(cli, ["catalog", "stats"])
    lines = stats.stdout.splitlines()
    assert lines[1] == "albums: 12" and lines[0].startswith("artists: ")
    genres = [int(line.rsplit(": ", 1)[1]) for line in lines[2:] if line.startswith("  ")]
    assert sum(genres) == 12 and genres == sorted(genres, reverse=True)
    assert lines[-1].endswith("(missing)")
    assert runner.invoke(cli, ["catalog", "snapshot"]).exit_code == 0 and snapshot.exists()


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "scanbatch"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "keys" in result.stdout


def test_keys_go_through_the_running_server_and_work_at_once(tmp_path, monkeypatch, runner):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("SCANBATCH_DATA_DIR", str(data))
    server = ServerProcess(data).start()
    try:
        result = runner.invoke(cli, ["keys", "create", "--user", "newbie", "--role", "dj"])
        assert result.exit_code == 0, result.stderr
        token = result.stdout.strip()
        url = f"{server.url}/library/scan/batch"
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(url, headers=headers, timeout=10).status_code == 200
        listing = runner.invoke(cli, ["keys", "list"]).stdout
        assert "newbie" in listing
        key_id = next(line.split()[0] for line in listing.splitlines() if "newbie" in line)
        assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 0
        assert requests.get(url, headers=headers, timeout=10).status_code == 401
        again = runner.invoke(cli, ["keys", "revoke", key_id])
        assert again.exit_code == 1 and "No active API key" in again.stderr
    finally:
        server.stop()
    assert not (data / "server.json").exists()  # removed on a clean stop


def test_readme_is_in_step_with_the_code():
    # The settings table and command reference are generated (cog); `make lint` checks too.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cog"), "--check", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_run_refuses_a_pixel_bomb_like_an_upload(env, runner):
    from scanbatch.testing.imaging import png_header

    manifest, image = write_batch(env, [""])
    Path(image).write_bytes(png_header(13000, 13000))
    result = runner.invoke(cli, ["run", "--extractor", "fake", "--manifest", manifest, image])
    assert result.exit_code == 1 and "images[0] is 13000x13000 pixels" in result.stderr


# --- a dataset bigger than one batch: the README's loop, synth -> run -> eval -----------------


@pytest.fixture(scope="module")
def synth12(tmp_path_factory):
    """`scanbatch synth --items 12`, through the CLI: more records than one batch holds (10).
    Each record's context names its own artist, which the fake extractor reads back: a
    result scored against another record's truth is then wrong, so a misplaced job shows."""
    out = tmp_path_factory.mktemp("synth") / "set"
    result = CliRunner().invoke(
        cli, ["synth", "--items", "12", "--seed", "1", "--workers", "1", str(out)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    truth = json.loads((out / "truth.json").read_text())["items"]
    for item, t in zip(manifest["items"], truth, strict=True):
        item["context"] = {"artistName": t["artistName"]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def run_synth(env, runner, folder):
    images = sorted(str(p) for p in folder.glob("item*"))  # the shell's `folder/item*`
    args = ["run", "--extractor", "fake", "--manifest", str(folder / "manifest.json"), *images]
    return runner.invoke(cli, args)


def test_run_sends_a_dataset_as_several_jobs_and_eval_scores_them_together(env, runner, synth12):
    result = run_synth(env, runner, synth12)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["totalItems"], doc["completedItems"], doc["status"]) == (12, 12, "completed")
    assert [(j["firstItem"], j["totalItems"]) for j in doc["jobs"]] == [(0, 10), (10, 2)]
    # Each job numbers its items from 0, as the server does; each is at most one batch.
    assert [r["itemIndex"] for r in doc["jobs"][1]["results"]] == [0, 1]
    folders = [env / "data" / "jobs" / j["jobId"] for j in doc["jobs"]]
    for folder in folders:
        assert len(json.loads((folder / "manifest.json").read_text())["items"]) <= 10
        assert (folder / "process_batch.ipynb").is_file()  # through the processing notebook
    (env / "jobs.json").write_text(result.stdout)

    def artist_accuracy(*sources):
        out = env / "eval.json"
        res = runner.invoke(cli, ["eval", str(synth12 / "truth.json"), *map(str, sources),
                                  "--json", str(out)])  # fmt: skip
        assert res.exit_code == 0, res.output
        report = json.loads(out.read_text())
        assert (report["items"], report["results"]) == (12, 12)
        return report["fields"]["artistName"]["accuracy"], res.stdout

    # The printed JSON: each job at its firstItem.
    accuracy, text = artist_accuracy(env / "jobs.json")
    assert accuracy == 1.0 and "dataset items 10-11 (placed by firstItem)" in text
    # The job folders, last job first (as `data/jobs/*` may list them): placed by their photos.
    assert artist_accuracy(*reversed(folders))[0] == 1.0
    assert artist_accuracy(folders[1] / "results.jsonl", folders[0] / "results.jsonl")[0] == 1.0
    # Two API status JSONs say nothing of where they sit: refused, never guessed from order.
    for n, job in enumerate(doc["jobs"]):
        job.pop("firstItem")
        (env / f"status{n}.json").write_text(json.dumps(job))
    res = runner.invoke(
        cli,
        ["eval", str(synth12 / "truth.json"), str(env / "status1.json"), str(env / "status0.json")],
    )
    assert res.exit_code == 1 and "cannot tell which dataset items this job holds" in res.stderr
    res = runner.invoke(
        cli, ["eval", str(synth12 / "truth.json"), str(folders[0]), str(folders[0])]
    )
    assert res.exit_code == 1 and "give each job once" in res.stderr


def test_run_checks_every_job_before_the_first_runs(env, runner, synth12, tmp_path):
    from scanbatch.testing.imaging import png_header

    folder = tmp_path / "set"
    shutil.copytree(synth12, folder)
    last = sorted(folder.glob("item11_*"))[-1]
    last.write_bytes(png_header(13000, 13000))
    result = run_synth(env, runner, folder)
    assert result.exit_code == 1
    total = len(list(folder.glob("item*")))
    assert f"images[{total - 1}] is 13000x13000 pixels" in result.stderr
    assert not (env / "data" / "jobs").exists() or not any((env / "data" / "jobs").iterdir())


def test_run_refuses_photos_out_of_the_manifests_order(env, runner, synth12):
    images = sorted(str(p) for p in synth12.glob("item*"))
    images[0], images[-1] = images[-1], images[0]
    args = ["run", "--extractor", "fake", "--manifest", str(synth12 / "manifest.json"), *images]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and "not in the manifest's order: item 0" in result.stderr
