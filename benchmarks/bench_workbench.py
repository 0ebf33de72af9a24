"""Issue 10's speed goals for the workbench, measured in Debian's chromium (playwright) against
the real launcher (`make run`: API server + Voilà serving notebooks/workbench.ipynb) on
127.0.0.1, with the fake extractor so the reader's speed does not count:

- the page shows its widgets (signed in) after load            goal 3 s
- Save & next shows the next record, its label and photos      goal 150 ms (issue 21)
- 50 photos (2 MB each) from the page to one job               goal 1.5x the client's own POST
- 500 photos (1 GB) chosen at once: the page's kernel and the browser tab each under 300 MB

    .venv/bin/python benchmarks/bench_workbench.py [--repeat N] [--steps load,review,upload]

Figures are medians; each line prints the figure, the goal and their ratio. Save & next is
timed in the browser: from the click on the button to the next record's header (its label)
shown, and to every one of its three thumbnails shown and decoded (new pictures with their
pixels), records of three 2 MB photos; alone, then with a colleague taking and saving a record
through `next` between two saves of the page (so the page is not always handed the record
after its own). The upload runs in a launcher of its own: the browser posts the photos itself
(the kernel mints a ticket per job), so the page's time is that POST's plus the page's own
steps; the baseline is the same 100 MB posted straight to the API with the Python client in
the same run, each POST meeting an idle server. Nothing is asserted: timings on a shared
machine vary."""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from common import ROOT, MiB, load_average, photo_of_size

from scanbatch.client import Client
from scanbatch.testing.servers import Launcher

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 2200}
PHOTOS_PER_RECORD = 3
REVIEW_RECORDS = 10  # a job: a batch takes at most 10 records
REVIEW_JOBS = 3  # 8 saves alone, then 8 with a colleague saving 8 more

# In the page: the click on Save & next starts a clock; every animation frame checks whether
# the header names another record (the label shown) and whether that record's thumbnails are
# all new pictures (an <img> with another source than before the click), shown, with their
# pixels decoded (the photos shown).
_SAVE_CLOCK = """(expected) => {
  const record = () => document.querySelector('.sb-record-header');
  const thumbs = () => [...record().parentElement.querySelectorAll('img')]
      .filter(i => i.offsetParent !== null);
  window.__saveTimes = null;
  const before = record().innerText;
  const old = new Set(thumbs().map(i => i.src));
  document.querySelector('.sb-save').addEventListener('click', () => {
    const t0 = performance.now();
    let label = null;
    const tick = () => {
      const now = performance.now();
      if (label === null && record().innerText !== before) label = now - t0;
      const imgs = thumbs();
      const shown = label !== null && imgs.length === expected &&
          imgs.every(i => !old.has(i.src) && i.complete && i.naturalWidth > 0);
      if (shown) window.__saveTimes = {label: label, photos: now - t0};
      else if (now - t0 < 30000) requestAnimationFrame(tick);
      else window.__saveTimes = {label: label, photos: null};
    };
    requestAnimationFrame(tick);
  }, {capture: true, once: true});
}"""


def line(what: str, seconds: float, goal: float, extra: str = "") -> None:
    print(
        f"{what:<48} {seconds * 1000:8.0f} ms   goal {goal * 1000:6.0f} ms   "
        f"ratio {seconds / goal:5.2f}{('   ' + extra) if extra else ''}",
        flush=True,
    )


def save_and_next(page, repeat: int, colleague: Client | None = None) -> None:
    """Save & next, timed in the browser (see _SAVE_CLOCK): the next record's label, then its
    photos. Each record is given a second, as a director reading it would (the photos fetched
    ahead arrive meanwhile). With `colleague`, another reviewer takes a record through `next`
    and saves it between two saves of the page: the record the page gets is then not always
    the one after its own."""
    from playwright.sync_api import expect

    from scanbatch.names import FIELDS

    page.get_by_role("tab", name="Review").click()
    expect(page.locator(".sb-record-header").get_by_text("Record 1 of")).to_be_visible(
        timeout=30_000
    )
    labels, shown = [], []
    for n in range(min(repeat * 3, 8)):
        page.wait_for_timeout(1000)  # the director reads and corrects the record
        artist = page.locator(".sb-field-artistName input")
        artist.fill(f"Checked {n}")
        artist.press("Enter")
        page.wait_for_timeout(200)
        if colleague is not None:
            theirs = colleague.next_review()
            if theirs is not None:
                colleague.save_review(
                    theirs.job_id,
                    theirs.item_index,
                    dict.fromkeys(FIELDS),
                    None,
                    version=theirs.version,
                )
        page.evaluate(_SAVE_CLOCK, PHOTOS_PER_RECORD)
        page.click(".sb-save")
        page.wait_for_function("window.__saveTimes !== null", timeout=60_000)
        times = page.evaluate("window.__saveTimes")
        labels.append((times["label"] if times["label"] is not None else 30_000) / 1000)
        shown.append((times["photos"] if times["photos"] is not None else 30_000) / 1000)
    n = f"n={len(shown)}"
    who = ", colleague" if colleague is not None else ""
    line(
        f"Save & next -> label shown{who}",
        statistics.median(labels),
        0.15,
        f"({n}, max {max(labels) * 1000:.0f} ms)",
    )
    line(
        f"Save & next -> label + {PHOTOS_PER_RECORD} photos shown{who}",
        statistics.median(shown),
        0.15,
        f"({n}, max {max(shown) * 1000:.0f} ms)",
    )


def colleague_of(api: str, data: Path) -> Client:
    """A second music director's client, with a key made by this machine's own server key."""
    import requests

    from scanbatch import server_file
    from scanbatch.names import Role

    manager = server_file.read(data)
    assert manager is not None
    made = requests.post(
        f"{api}/admin/keys",
        json={"user": "colleague", "role": Role.MUSIC_DIRECTOR.value},
        headers={"Authorization": f"Bearer {manager.token}"},
        timeout=30,
    )
    made.raise_for_status()
    return Client(api, made.json()["token"])


# The send number `n` of the page has its job received (202) / the page shows n job bars.
ACCEPTED = """(n) => {
    const box = document.querySelector('.sb-sending');
    return box !== null && Number(box.dataset.sends) === n && Number(box.dataset.accepted) >= 1;
}"""
BARS = "(n) => document.querySelectorAll('.sb-job-bar').length >= n"
BYTES_SENT = """() => {
    const bar = document.querySelector('.sb-bytes');
    return bar !== null && bar.max > 1 && bar.value >= bar.max;
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--steps", default="load,review,upload", help="which of load, review, upload to run"
    )
    args = parser.parse_args()
    steps = set(args.steps.split(","))

    print(f"load average before: {load_average()} (2 cores shared: figures are under load)")
    with tempfile.TemporaryDirectory() as tmp:
        if steps & {"load", "review"}:
            bench_page(Path(tmp) / "page", args.repeat, steps)
        if "upload" in steps:
            bench_upload(Path(tmp) / "upload", args.repeat)
    print(f"load average after: {load_average()}")
    return 0


def bench_page(tmp_path: Path, repeat: int, steps: set[str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    tmp_path.mkdir()
    photos = []
    for r in range(10):
        for p in range(5):
            path = tmp_path / f"item{r:02d}_{p}_front_cover.jpg"
            path.write_bytes(photo_of_size(r * 5 + p))
            photos.append(path)
    launcher = Launcher(ROOT, "--no-demo", SCANBATCH_DATA_DIR=str(tmp_path / "data")).start()
    banner = launcher.banner
    try:
        client = Client(banner["api"], banner["token"])
        # Records to review, each of three 2 MB photos (the server makes a thumbnail of
        # each on its first request: what fetching them ahead hides).
        manifest = [
            {
                "imageCount": PHOTOS_PER_RECORD,
                "photoTypes": ["front_cover", "back_cover", "center_label"],
                "context": {"artistName": f"Artist {i}", "albumTitle": f"Title {i}"},
            }
            for i in range(REVIEW_RECORDS)
        ]
        if "review" in steps:
            for _ in range(REVIEW_JOBS):
                job = client.submit(photos[: REVIEW_RECORDS * PHOTOS_PER_RECORD], manifest)
                client.wait(job)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            loads = []
            for _ in range(repeat if "load" in steps else 0):
                # Voilà refills its preheated kernel after each visit; give it the time a
                # person between two visits would.
                time.sleep(8)
                page = browser.new_page(viewport=VIEWPORT)
                t0 = time.perf_counter()
                page.goto(banner["page"])
                expect(page.get_by_text("Signed in to")).to_be_visible(timeout=60_000)
                page.locator(".sb-upload").wait_for(state="visible")
                loads.append(time.perf_counter() - t0)
                page.close()
            if loads:
                line(
                    "page load -> widgets shown (signed in)",
                    statistics.median(loads),
                    3.0,
                    "(each: " + ", ".join(f"{x:.1f}" for x in loads) + " s)",
                )

            page = browser.new_page(viewport=VIEWPORT)
            page.goto(banner["page"])
            expect(page.get_by_text("Signed in to")).to_be_visible(timeout=60_000)
            if "review" in steps:
                save_and_next(page, repeat)
                save_and_next(page, repeat, colleague_of(banner["api"], tmp_path / "data"))
            browser.close()
    finally:
        launcher.stop(signal.SIGINT, timeout=60)


def memory_line(what: str, peak: Peak, extra: str = "") -> None:
    before_rss, before_uss = peak.first
    print(
        f"  {what + ' RSS':<46} {peak.rss:8.0f} MB   goal    300 MB   ratio "
        f"{peak.rss / 300:5.2f}   (its own: {peak.uss:.0f} MB; before choosing: RSS "
        f"{before_rss:.0f} MB, its own {before_uss:.0f} MB{'; ' + extra if extra else ''})",
        flush=True,
    )


def memory_mib(processes) -> tuple[float, float]:
    """The largest resident and private (USS: what it alone holds) memory among `processes`:
    the page's own kernel among Voilà's preheated ones, the tab's renderer among chromium's."""
    rss = uss = 0
    for proc in processes:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        rss, uss = max(rss, info.rss), max(uss, info.uss)
    return rss / MiB, uss / MiB


def page_kernels(launcher: Launcher) -> list[psutil.Process]:
    """The page's kernels: the ipykernel processes Voilà started (not the server's)."""
    return [
        k
        for v in descendants(launcher.proc.pid, "voila")
        for k in v.children(recursive=True)
        if "ipykernel" in command(k)
    ]


def renderers(browser_pid: int) -> list[psutil.Process]:
    return descendants(browser_pid, "--type=renderer")


def command(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # gone meanwhile, or a zombie
        return ""


def descendants(pid: int, marker: str) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if marker in command(p)]
    except psutil.Error:
        return []


class Peak(threading.Thread):
    """The highest memory of some processes, sampled every 50 ms until stopped."""

    def __init__(self, find) -> None:
        super().__init__(daemon=True)
        self.find = find
        self.first = memory_mib(find())
        self.rss = self.uss = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            rss, uss = memory_mib(self.find())
            self.rss, self.uss = max(self.rss, rss), max(self.uss, uss)
            time.sleep(0.1)

    def stop(self) -> Peak:
        self.done.set()
        self.join()
        return self


def crate(folder: Path, records: int, per_record: int, originals: list[Path]) -> list[Path]:
    """Photos named by record (grouped by their names), hard links of a few real files."""
    folder.mkdir()
    photos = []
    for r in range(records):
        for p in range(per_record):
            path = folder / f"item{r:03d}_{p}_front_cover.jpg"
            os.link(originals[(r * per_record + p) % len(originals)], path)
            photos.append(path)
    return photos


def choose_on_page(page, photos: list[Path], records: int) -> float:
    from playwright.sync_api import expect

    t0 = time.perf_counter()
    with page.expect_file_chooser() as chooser:
        page.click(".sb-upload")
    chooser.value.set_files([str(p) for p in photos])
    expect(page.locator(".sb-summary")).to_contain_text(
        f"{len(photos)} photo(s) in {records} record(s)", timeout=300_000
    )
    return time.perf_counter() - t0


def bench_upload(tmp_path: Path, repeat: int) -> None:
    from playwright.sync_api import expect, sync_playwright

    tmp_path.mkdir()
    originals = []
    for n in range(50):
        path = tmp_path / f"original{n}.jpg"
        path.write_bytes(photo_of_size(n))
        originals.append(path)
    fifty = crate(tmp_path / "fifty", 10, 5, originals)
    five_hundred = crate(tmp_path / "five-hundred", 500, 1, originals)
    total_mb = sum(p.stat().st_size for p in fifty) / 1e6
    big_mb = sum(p.stat().st_size for p in five_hundred) / 1e6
    launcher = Launcher(ROOT, "--no-demo", SCANBATCH_DATA_DIR=str(tmp_path / "data")).start()
    banner = launcher.banner
    try:
        client = Client(banner["api"], banner["token"])
        manifest = [{"imageCount": 5, "photoTypes": ["front_cover"] * 5}] * 10
        client.wait(client.submit(fifty[:5], manifest[:1]))  # warms the server and its kernels
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(banner["page"])
            expect(page.get_by_text("Signed in to")).to_be_visible(timeout=60_000)
            pages, directs = [], []
            accepted = []
            for n in range(repeat):
                # Each POST meets an idle server: the job before it is read to the end first.
                chosen = choose_on_page(page, fifty, 10)
                t0 = time.perf_counter()
                page.click(".sb-send")
                # Polled at each frame: expect()'s back-off would add up to a second.
                page.wait_for_function(ACCEPTED, arg=n + 1, polling="raf", timeout=120_000)
                accepted.append(time.perf_counter() - t0)
                page.wait_for_function(BARS, arg=n + 1, polling="raf", timeout=120_000)
                pages.append(time.perf_counter() - t0)
                client.wait(client.jobs(limit=1).jobs[0].job_id, timeout=300)
                t0 = time.perf_counter()
                job = client.submit(fifty, manifest)
                directs.append(time.perf_counter() - t0)
                client.wait(job, timeout=300)
            page_s, direct_s = statistics.median(pages), statistics.median(directs)
            line(f"50 photos ({total_mb:.0f} MB) chosen -> records shown", chosen, 5.0)
            line(
                f"50 photos ({total_mb:.0f} MB): Send -> 202 shown",
                statistics.median(accepted),
                1.5 * direct_s,
                "(each: " + ", ".join(f"{x:.2f}" for x in accepted) + " s)",
            )
            line(
                f"50 photos ({total_mb:.0f} MB): Send -> its job's bar",
                page_s,
                1.5 * direct_s,
                "(goal: 1.5x the client's POST; each: "
                + ", ".join(f"{x:.2f}" for x in pages)
                + " s; the client's: "
                + ", ".join(f"{x:.2f}" for x in directs)
                + " s)",
            )
            line(
                "baseline: same 50 photos posted by the client",
                direct_s,
                direct_s,
                f"(the page takes {statistics.median(accepted) / direct_s:.2f}x the direct post "
                f"to its 202, {page_s / direct_s:.2f}x to its job's bar)",
            )

            page.close()
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(banner["page"])
            expect(page.get_by_text("Signed in to")).to_be_visible(timeout=60_000)
            browser_pid = next(
                p.pid
                for p in psutil.Process().children(recursive=True)
                if "chromium" in p.name() and "--type=" not in command(p)
            )
            kernel = Peak(lambda: page_kernels(launcher))
            tab = Peak(lambda: renderers(browser_pid))
            kernel.start()
            tab.start()
            chosen = choose_on_page(page, five_hundred, 500)
            page.wait_for_timeout(2000)  # the thumbnails in view are drawn
            shown = memory_mib(renderers(browser_pid))
            t0 = time.perf_counter()
            page.click(".sb-send")
            page.wait_for_function(BYTES_SENT, timeout=600_000)
            expect(page.locator(".sb-job-bar")).to_have_count(50, timeout=600_000)
            sent = time.perf_counter() - t0
            heap = page.evaluate("performance.memory.usedJSHeapSize") / MiB
            kernel.stop(), tab.stop()
            line(f"500 photos ({big_mb:.0f} MB) chosen -> records shown", chosen, 30.0)
            line(f"500 photos ({big_mb:.0f} MB): Send -> 50 jobs (202)", sent, 100.0)
            memory_line("the page's kernel, peak", kernel)
            memory_line(
                "the browser tab (its renderer), peak",
                tab,
                f"with the records shown, before sending: RSS {shown[0]:.0f} MB, its own "
                f"{shown[1]:.0f} MB; JS heap {heap:.0f} MB",
            )
            browser.close()
    finally:
        launcher.stop(signal.SIGINT, timeout=60)


if __name__ == "__main__":
    sys.exit(main())
