"""Issue 10's speed goals for the workbench, measured in Debian's chromium (playwright) against
the real launcher (`make run`: API server + Voilà serving notebooks/workbench.ipynb) on
127.0.0.1, with the fake extractor so the reader's speed does not count:

- the page shows its widgets (signed in) after load            goal 3 s
- Save & next shows the next record, its label and photos      goal 150 ms (issue 21)
- 50 photos (2 MB each) upload and become one job              goal 5 s

    .venv/bin/python benchmarks/bench_workbench.py [--repeat N] [--steps load,review,upload]

Figures are medians; each line prints the figure, the goal and their ratio. Save & next is
timed in the browser: from the click on the button to the next record's header (its label)
shown, and to every one of its three thumbnails shown and decoded (new pictures with their
pixels), records of three 2 MB photos; alone, then with a colleague taking and saving a record
through `next` between two saves of the page (so the page is not always handed the record
after its own). The baseline for the upload is the same 100 MB posted straight to the API with
the Python client (no browser, no websocket), printed beside it. Nothing is asserted: timings
on a shared machine vary."""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, load_average, photo_of_size

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--steps", default="load,review,upload", help="which of load, review, upload to run"
    )
    args = parser.parse_args()
    steps = set(args.steps.split(","))
    from playwright.sync_api import expect, sync_playwright

    print(f"load average before: {load_average()} (2 cores shared: figures are under load)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        photos = []
        for r in range(10):
            for p in range(5):
                path = tmp_path / f"item{r:02d}_{p}_front_cover.jpg"
                path.write_bytes(photo_of_size(r * 5 + p))
                photos.append(path)
        total_mb = sum(p.stat().st_size for p in photos) / 1e6
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
                for _ in range(args.repeat if "load" in steps else 0):
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
                    save_and_next(page, args.repeat)
                    save_and_next(page, args.repeat, colleague_of(banner["api"], tmp_path / "data"))
                if "upload" not in steps:
                    browser.close()
                    return 0
                page.get_by_role("tab", name="Upload").click()
                t0 = time.perf_counter()
                with page.expect_file_chooser() as chooser:
                    page.click(".sb-upload")
                chooser.value.set_files([str(p) for p in photos])
                expect(page.get_by_text("50 photo(s) in 10 record(s)")).to_be_visible(
                    timeout=120_000
                )
                uploaded = time.perf_counter() - t0
                page.click(".sb-send")
                expect(page.locator(".sb-job-bar")).to_have_count(1, timeout=120_000)
                became_job = time.perf_counter() - t0
                line(
                    f"50 photos ({total_mb:.0f} MB) -> in the kernel",
                    uploaded,
                    5.0,
                    "(one websocket message, over the 10 MiB default cap)",
                )
                line(f"50 photos ({total_mb:.0f} MB) -> one job (202)", became_job, 5.0)
                browser.close()

            t0 = time.perf_counter()
            client.submit(photos, [{"imageCount": 5, "photoTypes": ["front_cover"] * 5}] * 10)
            direct = time.perf_counter() - t0
            line(
                "baseline: same 50 photos posted by the client",
                direct,
                5.0,
                f"(the page takes {became_job / direct:.1f}x the direct post)",
            )
        finally:
            launcher.stop(signal.SIGINT, timeout=60)
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
