"""The one rate limiter: a sliding window kept in a file under the data folder, so every
process (each job's kernel, `scanbatch run`) draws from the same budget."""

import json
import subprocess
import sys
import threading

from scanbatch.extractors.ratelimit import RateLimiter, shared_limiter
from tests.conftest import ROOT

WORKER = """
import sys, time
from scanbatch.extractors.ratelimit import RateLimiter
limiter = RateLimiter(3, 1.0, path=sys.argv[1])
for _ in range(int(sys.argv[2])):
    limiter.acquire()
    print(time.time(), flush=True)
"""


def assert_window(starts, max_calls, period):
    starts = sorted(starts)
    for i in range(len(starts) - max_calls):
        # max_calls + 1 starts never fit in one period (a little slack for float rounding).
        assert starts[i + max_calls] - starts[i] >= period - 0.01, (i, starts)


def test_two_processes_share_one_window(tmp_path):
    path = tmp_path / "ratelimit" / "gemini.json"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), "4"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    starts = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        starts += [float(x) for x in out.split()]
    assert len(starts) == 8
    assert_window(starts, 3, 1.0)
    assert len(json.loads(path.read_text())) <= 3  # the file holds only the live window


def test_threads_and_separate_limiters_on_one_file_share_it(tmp_path):
    path = tmp_path / "w.json"
    starts = []
    lock = threading.Lock()

    def worker():
        limiter = RateLimiter(2, 0.5, path=path)
        for _ in range(3):
            limiter.acquire()
            with lock:
                starts.append(limiter._clock())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(starts) == 9
    assert_window(starts, 2, 0.5)


def test_in_memory_window_with_a_fake_clock():
    now = [100.0]
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2, 10.0, clock=lambda: now[0], sleep=sleep)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 10.0]
    assert waits == [10.0]


def test_a_garbled_window_file_is_started_afresh(tmp_path):
    path = tmp_path / "w.json"
    path.write_text("not json")
    assert RateLimiter(1, 60, path=path).acquire() == 0.0
    assert len(json.loads(path.read_text())) == 1


def test_shared_limiter_names_its_file_by_quota(tmp_path):
    a = shared_limiter(tmp_path, ("gemini", "https://x/", "m1"), 5)
    b = shared_limiter(tmp_path, ("gemini", "https://x/", "m1"), 5, 60.0)
    c = shared_limiter(tmp_path, ("gemini", "https://x/", "m2"), 5)
    assert a.path == b.path != c.path
    assert a.path.parent == tmp_path / "ratelimit" and a.path.name.startswith("gemini-")
