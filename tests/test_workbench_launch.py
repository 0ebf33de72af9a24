"""The launcher (`make run`): a quiet stop at any moment. Real processes: the launcher, its API
server and Voilà, on free ports of 127.0.0.1."""

from __future__ import annotations

import signal
import time

import pytest

from scanbatch.client import Client
from tests.server_process import ROOT, Launcher

pytestmark = pytest.mark.slow

SAMPLE = ROOT / "data" / "sample"
OPEN_THE_PRINTED_ADDRESS = "Open the workbench address printed by `make run`"


def assert_quiet(launcher: Launcher, code: int) -> None:
    """An orderly stop: exit code 0 and nothing in the whole output that looks like a fault."""
    out = launcher.output
    assert code == 0, out
    assert "Traceback" not in out, out
    assert "ERROR" not in out, out
    assert "scanbatch and the workbench stopped." in out, out


@pytest.fixture
def launcher(tmp_path):
    started: list[Launcher] = []

    def start(*args: str) -> Launcher:
        started.append(Launcher(ROOT, *args, SCANBATCH_DATA_DIR=str(tmp_path / "data")).start())
        return started[-1]

    yield start
    for one in started:
        if one.proc is not None and one.proc.poll() is None:
            one.stop()


def test_stopping_right_after_start_is_quiet(launcher):
    session = launcher()  # with the demo job, as `make run`
    assert_quiet(session, session.stop(signal.SIGTERM))


def test_stopping_during_a_job_is_quiet(launcher):
    session = launcher("--no-demo")
    client = Client(session.banner["api"], session.banner["token"])
    photo = SAMPLE / "item04_0_front_cover.jpg"
    job = client.submit(
        [photo, photo],
        {
            "items": [
                {
                    "imageCount": 1,
                    "photoTypes": ["front_cover"],
                    "context": {"stickerText": "sleep:120"},
                }
            ]
            * 2
        },
    )
    deadline = time.monotonic() + 120
    while client.job(job).status.value != "processing":
        assert time.monotonic() < deadline, session.output
        time.sleep(0.1)
    assert_quiet(session, session.stop())


def test_stopping_right_after_a_job_is_quiet(launcher):
    """The demo job ends, the pool is warming its next kernel from the store, and the stop
    closes that store: stopping then was `ERROR scanbatch.runner: could not work out warm-up
    parameters` and a traceback."""
    session = launcher()
    session.wait_for("Sample job ", timeout=240)
    assert_quiet(session, session.stop(signal.SIGTERM))
