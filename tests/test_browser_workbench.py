"""The workbench in a real browser: Debian's chromium driven by playwright, Voilà serving the
real notebook, started by the real launcher exactly as `make run` starts it: from the
repository root, with the default relative `data` folder and the demo job. `make screenshots`
runs it with the offline `ocr` reader and writes docs/*.png (the README's)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from scanbatch.client import Client
from scanbatch.testing.servers import ROOT, Launcher, copy_work_tree
from scanbatch.workbench.launch import SESSION_USER

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium"
SAMPLE = ROOT / "data" / "sample"
EXTRACTOR = os.environ.get("SCANBATCH_BROWSER_EXTRACTOR", "fake")
VIEWPORT = {"width": 1280, "height": 2200}  # tall: Voilà scrolls inside its own container
# The sample batch sent again through the API this many times, so the audit sample can grow
# past the 30 reviews an estimate over all records needs.
TOP_UP_JOBS = 5
AUDIT_SAVES = 3  # records saved from the page in the Audit sample order


def launch_args() -> list[str]:
    return ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """`make run` as a newcomer runs it: `python -m scanbatch.workbench.launch` with no data
    folder set (the relative `data`), the repository root as working directory, the demo job.
    The repository is a copy of this work tree (its package first on PYTHONPATH, so the
    settings' repository root is the copy's): the developer's own data/ folder, ports and store
    lock stay untouched, and nothing is left behind. Only the ports are free ones."""
    if not CHROMIUM.exists():
        pytest.fail(f"chromium is missing: the browser test needs it. Install it with: {INSTALL}")
    root = copy_work_tree(tmp_path_factory.mktemp("checkout"))
    assert not (root / "data" / "scanbatch.duckdb").exists()
    launcher = Launcher(root, SCANBATCH_EXTRACTOR=EXTRACTOR).start()
    assert {"api", "page", "token", "page_token"} <= set(launcher.banner), launcher.output
    # Everything went to <checkout>/data, the folder `make run` names: the store, the job of the
    # demo, the server's file for local commands.
    data = root / "data"
    assert (data / "scanbatch.duckdb").is_file(), launcher.output
    assert (data / "server.json").is_file()
    assert "Processing the sample batch (data/sample/) as job" in launcher.output
    yield {**launcher.banner, "launcher": launcher, "proc": launcher.proc, "data": data}
    if launcher.proc.poll() is None:
        launcher.stop()


@pytest.fixture(scope="module")
def page(session):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=launch_args())
        page = browser.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(session["page"])
        yield page
        browser.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: a temporary folder, or docs/ with SCANBATCH_SCREENSHOTS=docs
    (`make screenshots`), so a test run leaves the repository as it was."""
    wanted = os.environ.get("SCANBATCH_SCREENSHOTS")
    return (ROOT / wanted) if wanted else tmp_path_factory.mktemp("shots")


# The record's photos (the <img> elements around the record's header): what each shows.
PHOTOS = """() => [...document.querySelector('.sb-record-header').parentElement
    .querySelectorAll('img')].map(i => ({width: i.naturalWidth, complete: i.complete,
    shown: i.offsetParent !== null}))"""
ALL_PHOTOS_LOADED = """(expected) => {
    const imgs = [...document.querySelector('.sb-record-header').parentElement
        .querySelectorAll('img')];
    return imgs.length >= expected && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""

# The upload's bar of bytes sent is full.
BYTES_SENT = """() => {
    const bar = document.querySelector('.sb-bytes');
    return bar !== null && bar.max > 1 && bar.value >= bar.max;
}"""

# The same for the images shown only: a new record's large photo loads after its button is
# clicked, while the last record's, hidden, is still complete.
SHOWN_PHOTOS_LOADED = """(expected) => {
    const imgs = [...document.querySelector('.sb-record-header').parentElement
        .querySelectorAll('img')].filter(i => i.offsetParent !== null);
    return imgs.length >= expected && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def test_upload_watch_review_and_measure_in_a_browser(session, page, shots):
    from playwright.sync_api import expect

    expect(page.get_by_text("Signed in to")).to_be_visible(timeout=60_000)

    # Before anything is chosen the page says what the server takes.
    summary = page.locator(".sb-summary")
    expect(summary).to_contain_text("No photos chosen yet.")
    expect(summary).to_contain_text("at most 10 MiB each, 5 a record")

    # Upload the whole sample through the file chooser (HEIC included).
    files = sorted(str(p) for p in SAMPLE.iterdir() if p.suffix in (".jpg", ".heic"))
    heic = [f for f in files if f.endswith(".heic")]
    assert heic
    with page.expect_file_chooser() as chooser:
        page.click(".sb-upload")
    chooser.value.set_files(files)
    expect(summary).to_contain_text(f"{len(files)} photo(s) in 8 record(s)", timeout=30_000)
    megabytes = sum(Path(f).stat().st_size for f in files) / 1e6
    expect(summary).to_contain_text(f"{megabytes:,.1f} MB")
    expect(summary).to_contain_text("jobs of at most 10 records and 50 photos")
    expect(page.locator(".sb-record")).to_have_count(8)
    # Thumbnails drawn in the browser; HEIC, which chromium cannot decode, shows its name.
    expect(page.locator(".sb-thumb.sb-drawn")).to_have_count(len(files) - len(heic), timeout=30_000)
    expect(page.locator(".sb-thumb.sb-undrawn")).to_have_count(len(heic))
    expect(page.locator(".sb-thumb.sb-undrawn").first).to_contain_text(".heic")
    # What the director already knows about record 1 travels as its context.
    page.locator(".sb-context-1-artistName input").fill("John Walker-Schmidt")
    page.locator(".sb-context-1-albumTitle input").fill("Fever")
    page.screenshot(path=str(shots / "workbench-upload.png"))
    page.click(".sb-send")
    # The photos' bytes go up from the browser; its bar reaches the end.
    page.wait_for_function(BYTES_SENT, timeout=60_000)
    expect(page.locator(".sb-bytes-text")).to_contain_text(
        f"{megabytes:,.1f} of {megabytes:,.1f} MB sent; 1 of 1 job(s) received by the server"
    )

    # One job, its bar fills item by item until done.
    expect(page.locator(".sb-job-bar")).to_have_count(1, timeout=30_000)
    expect(page.locator(".sb-job-bar").get_by_text("Done")).to_be_visible(timeout=240_000)

    # The queue holds the demo's 8 records and the 8 sent from the page.
    session["launcher"].wait_for("Sample job ", timeout=240)
    page.get_by_role("tab", name="Review").click()
    expect(page.locator(".sb-record-header").get_by_text("Record 1 of 16")).to_be_visible(
        timeout=30_000
    )
    page.locator(".sb-photo-button").first.click()
    page.locator(".sb-record-header").scroll_into_view_if_needed()
    # Every photo of the record loaded, its thumbnails and the large one (under `make run`'s
    # relative data folder they all answered 500 once, and the review showed none).
    photos = page.locator(".sb-photo-button").count()
    assert photos >= 1
    try:
        page.wait_for_function(ALL_PHOTOS_LOADED, arg=photos + 1, timeout=60_000)
    except Exception:
        pytest.fail(f"photos of the review tab did not load: {page.evaluate(PHOTOS)}")
    artist = page.locator(".sb-field-artistName input")
    artist.fill("Corrected Artist")
    artist.press("Enter")
    page.wait_for_timeout(300)  # let the Enter reach the kernel before saving
    page.click(".sb-save")
    expect(page.get_by_text("Saved job")).to_be_visible(timeout=30_000)
    expect(page.locator(".sb-record-header").get_by_text("Record 1 of 15")).to_be_visible()

    # The dashboard counts it.
    page.get_by_role("tab", name="Dashboard").click()
    expect(page.get_by_text("1 reviewed record(s)")).to_be_visible(timeout=30_000)
    page.locator(".sb-plot img").wait_for(state="visible", timeout=30_000)

    # What reached the server, seen through the API.
    client = Client(session["api"], session["token"])
    (reviewed,) = client.review_items(state="reviewed").items
    assert reviewed.review.fields["artistName"] == "Corrected Artist"
    assert reviewed.review.reviewer == "director"
    if EXTRACTOR == "fake":  # the fake reader echoes the context typed on the upload page
        sent, _demo = client.jobs().jobs  # newest first
        first = client.job(sent.job_id).results[0].extraction
        assert first["albumTitle"]["value"] == "Fever"

    audit_sample_on_the_page(page, client, shots)
    estimates_on_the_dashboard(page, client, shots)


def test_a_crate_of_camera_photos_goes_up_in_four_actions(session, page, shots, tmp_path):
    """30 records x 3 photos as a phone names them (IMG_4101.jpg …, every fourth HEIC), with
    their EXIF times: from choosing them to sent in at most 4 actions, grouped by capture time
    in the browser's reading, sent as 3 jobs of 10 records, the bar of bytes reaching its end;
    each record on the server holds its own photos."""
    from playwright.sync_api import expect

    from scanbatch.testing.camera import camera_crate

    crate = camera_crate(tmp_path / "crate", records=30, per_record=3)
    heic = [p for p in crate if p.suffix == ".HEIC"]
    assert heic
    client = Client(session["api"], session["token"])
    before = {j.job_id for j in client.jobs(limit=100).jobs}
    bars = page.locator(".sb-job-bar").count()
    page.get_by_role("tab", name="Upload").click()
    summary = page.locator(".sb-summary")
    actions = 0
    with page.expect_file_chooser() as chooser:
        page.click(".sb-upload")
        actions += 1
    chooser.value.set_files([str(p) for p in sorted(crate)])
    actions += 1
    expect(summary).to_contain_text("90 photo(s) in 30 record(s)", timeout=60_000)
    expect(summary).to_contain_text("sent as 3 jobs")
    expect(page.locator(".sb-grouping .mod-active")).to_have_text("By capture time")
    titles = page.locator(".sb-record-title")
    expect(titles).to_have_count(30)
    expect(titles.first).to_have_text("Record 1 · 3 photo(s)")
    expect(page.locator(".sb-thumb.sb-undrawn").first).to_contain_text(".HEIC")
    expect(page.locator(".sb-thumb.sb-undrawn").first).to_contain_text("2026-11-28")
    page.wait_for_timeout(500)  # the thumbnails in view are drawn one after the other
    page.screenshot(path=str(shots / "workbench-upload-camera.png"))
    page.click(".sb-send")
    actions += 1
    assert actions <= 4
    page.wait_for_function(BYTES_SENT, timeout=120_000)
    expect(page.locator(".sb-bytes-text")).to_contain_text("3 of 3 job(s) received by the server")
    expect(page.locator(".sb-job-bar")).to_have_count(bars + 3, timeout=60_000)
    expect(page.get_by_text("Sent 3 job(s).")).to_be_visible(timeout=30_000)
    expect(page.locator(".sb-record")).to_have_count(0)
    done = page.locator(".sb-job-bar").get_by_text("Done")
    expect(done).to_have_count(bars + 3, timeout=240_000)
    page.screenshot(path=str(shots / "workbench-upload-sent.png"))

    # Two jobs go at once, so the server may have them in either order: each job is known by
    # its photos.
    jobs = [j for j in client.jobs(limit=100).jobs if j.job_id not in before]
    assert [j.total_items for j in jobs] == [10, 10, 10]
    taken = {p.read_bytes(): n for n, p in enumerate(crate)}
    firsts = []
    for job in jobs:
        got = [[taken.get(client.photo(job.job_id, i, k)) for k in range(3)] for i in range(10)]
        first = got[0][0]
        assert got == [[first + 3 * i + k for k in range(3)] for i in range(10)]
        firsts.append(first)
    assert sorted(firsts) == [0, 30, 60]


def test_a_job_that_cannot_go_says_why_and_the_others_still_go(session, page, tmp_path):
    """11 records make 2 jobs; a photo of the first is moved away on disk after it was chosen,
    so the browser cannot send that job: the page says so for that job, the second goes, and
    the first job's records stay chosen to be sent again."""
    from playwright.sync_api import expect

    from scanbatch.testing.imaging import image_bytes

    folder = tmp_path / "crate"
    folder.mkdir()
    photos = [folder / f"item{i:02d}_0_front_cover.jpg" for i in range(11)]
    for photo in photos:
        photo.write_bytes(image_bytes())
    bars = page.locator(".sb-job-bar").count()
    page.get_by_role("tab", name="Upload").click()
    with page.expect_file_chooser() as chooser:
        page.click(".sb-upload")
    chooser.value.set_files([str(p) for p in photos])
    expect(page.locator(".sb-summary")).to_contain_text("11 photo(s) in 11 record(s)")
    expect(page.locator(".sb-summary")).to_contain_text("sent as 2 jobs")
    photos[0].rename(tmp_path / photos[0].name)  # moved after it was chosen
    page.click(".sb-send")
    message = page.locator(".sb-upload-message .sb-msg")
    expect(message).to_contain_text("Sent 1 of 2 job(s).", timeout=60_000)
    expect(message).to_contain_text("Job 1 (records 1–10): the browser could not send it")
    expect(message).to_contain_text("a photo changed or moved on disk")
    expect(page.locator(".sb-bytes-text")).to_contain_text("1 of 2 job(s) received by the server")
    expect(page.locator(".sb-job-bar")).to_have_count(bars + 1)
    expect(page.locator(".sb-record")).to_have_count(10)
    expect(page.locator(".sb-send")).to_be_enabled()
    page.click(".sb-clear")
    expect(page.locator(".sb-record")).to_have_count(0)


@pytest.fixture(scope="module")
def ocr_session(request, tmp_path_factory):
    """`make run` with the offline `ocr` reader, which cannot batch: the module's own session
    when it runs one (`make screenshots`), else a launcher of its own."""
    if EXTRACTOR == "ocr":
        yield request.getfixturevalue("session")
        return
    root = copy_work_tree(tmp_path_factory.mktemp("ocr-checkout"))
    launcher = Launcher(root, SCANBATCH_EXTRACTOR="ocr").start()
    yield {**launcher.banner, "launcher": launcher}
    launcher.stop()


def test_a_crate_sent_as_backlog_on_a_server_that_cannot_batch(ocr_session, page, shots, tmp_path):
    """The upload's choice: Backlog, on a server reading with `ocr` (no batch API), says that
    backlog jobs run as usual here; the crate goes with mode=backlog, and the job is a backlog
    job that ran as usual. (In the module's browser: one playwright per process.)"""
    from playwright.sync_api import expect

    from scanbatch.testing.camera import camera_crate

    crate = camera_crate(tmp_path / "crate", records=2, per_record=2, heic_every=None)
    client = Client(ocr_session["api"], ocr_session["token"])
    before = {j.job_id for j in client.jobs(limit=100).jobs}
    errors: list[str] = []
    tab = page.context.browser.new_page(viewport=VIEWPORT)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    try:
        tab.goto(ocr_session["page"])
        expect(tab.get_by_text("Signed in to")).to_be_visible(timeout=60_000)
        note = tab.locator(".sb-mode-note")
        expect(note).to_contain_text("Read now: each record is read as soon as the job reaches")
        expect(note).to_contain_text(
            "Backlog: this server reads with ocr, which has no batch API, so backlog jobs run "
            "as usual on this server: read now, at the usual price (free)."
        )
        expect(note).to_contain_text("Prices of ")
        tab.locator(".sb-mode button", has_text="Backlog").click()
        expect(tab.locator(".sb-mode .mod-active")).to_have_text("Backlog")
        with tab.expect_file_chooser() as chooser:
            tab.click(".sb-upload")
        chooser.value.set_files([str(p) for p in crate])
        expect(tab.locator(".sb-summary")).to_contain_text("4 photo(s) in 2 record(s)")
        expect(tab.locator(".sb-record")).to_have_count(2)
        tab.wait_for_timeout(500)  # the thumbnails in view are drawn one after the other
        tab.screenshot(path=str(shots / "workbench-upload-backlog.png"))
        tab.click(".sb-send")
        expect(tab.get_by_text("Sent 1 job(s) to the backlog.")).to_be_visible(timeout=60_000)
        expect(tab.locator(".sb-job-bar").get_by_text("Done")).to_have_count(1, timeout=120_000)
    finally:
        tab.close()
    assert not errors, errors
    [job] = [j for j in client.jobs(limit=100).jobs if j.job_id not in before]
    view = client.job(job.job_id)
    assert view.mode == "backlog" and view.total_items == 2
    assert view.backlog is not None and view.backlog.state == "interactive"
    assert "ocr" in (view.backlog.note or "")
    assert view.status == "completed"


def audit_sample_on_the_page(page, client: Client, shots: Path) -> None:
    """Order: Audit sample. The queue is the server's audit order (the API's `sort=audit`
    page, label for label), it says why it exists, and saving takes the records in it."""
    from playwright.sync_api import expect

    from scanbatch.workbench.review import queue_label

    page.get_by_role("tab", name="Review").click()
    page.locator(".sb-order select").select_option(label="Audit sample")
    expect(page.locator(".sb-why")).to_contain_text("fair sample", timeout=30_000)
    expect(page.get_by_text("in the audit sample's order")).to_be_visible()
    # The page left the record it had and was handed the audit order's first: the list
    # shows that lease as the page's own.
    audit = leased_first(client, "audit")
    assert len(audit) == 15
    expect(page.locator(".sb-queue option")).to_have_text(
        [queue_label(i, SESSION_USER) for i in audit]
    )
    assert "✎ you (until" in queue_label(audit[0], SESSION_USER)
    least_confident = client.review_items(sort="confidence", limit=100).items
    assert [queue_label(i) for i in audit] != [queue_label(i) for i in least_confident]
    header = page.locator(".sb-record-header")
    for n, item in enumerate(audit[:AUDIT_SAVES]):
        expect(header).to_contain_text(f"Record 1 of {15 - n}")
        expect(header).to_contain_text(f"job {item.job_id[:8]}, item {item.item_index}")
        if n == 0:  # the Review tab's screenshot: the audit order, its reason, a record
            page.locator(".sb-photo-button").first.click()
            photos = page.locator(".sb-photo-button").count()
            page.wait_for_function(SHOWN_PHOTOS_LOADED, arg=photos + 1, timeout=60_000)
            page.screenshot(path=str(shots / "workbench.png"))
        page.click(".sb-save")
        expect(
            page.get_by_text(f"Saved job {item.job_id[:8]} item {item.item_index}")
        ).to_be_visible(timeout=30_000)
    saved = {(i.job_id, i.item_index) for i in client.review_items(state="reviewed").items}
    assert {(i.job_id, i.item_index) for i in audit[:AUDIT_SAVES]} <= saved
    assert len(saved) == 1 + AUDIT_SAVES


def leased_first(client: Client, sort: str, timeout: float = 30) -> list:
    """The queue in `sort` order once the page holds the lease of its first record, and only
    that one (the page leaves its record and asks `next` when the order changes)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        items = client.review_items(sort=sort, limit=100).items
        leased = [i for i in items if i.lease is not None]
        if len(leased) == 1 and leased[0] is items[0]:
            return items
        assert time.monotonic() < deadline, [(i.item_index, i.lease) for i in leased]
        time.sleep(0.2)


def review_as_truth(client: Client, item, truth: list[dict]) -> None:
    """A director's review: the sample's truth for the record (every job here is the sample)."""
    from scanbatch.names import FIELDS

    right = truth[item.item_index]
    client.save_review(
        item.job_id, item.item_index, {n: right[n] for n in FIELDS}, right["albumId"]
    )


def dashboard_row(page, label: str):
    return page.locator(".sb-estimates tr").filter(has=page.locator("td", has_text=label))


def estimates_on_the_dashboard(page, client: Client, shots: Path) -> None:
    """With 4 reviews of 16 the page says how many audit reviews an estimate needs; once the
    audit sample has enough, the estimate over all records stands beside the reviewed-only
    figure, as the API computes them."""
    from playwright.sync_api import expect

    from scanbatch.workbench.dashboard import estimate_text, reviewed_text

    page.get_by_role("tab", name="Dashboard").click()
    expect(page.get_by_text(f"{1 + AUDIT_SAVES} reviewed record(s)")).to_be_visible(timeout=30_000)
    (group,) = client.metrics()["groups"]
    assert group["overall"]["estimate"] is None
    summary = page.locator(".sb-dashboard")
    expect(summary).to_contain_text(group["overall"]["estimateNote"])
    expect(summary).to_contain_text("All 16 records: share right (95% range)")
    expect(summary).to_contain_text("Reviewed records only: share right")
    label = dashboard_row(page, "Album title")
    expect(label).to_contain_text(reviewed_text(group["fields"]["albumTitle"], group["reviewed"]))

    # More of the same crate through the API, reviewed in the audit order until the audit
    # sample carries an estimate (the note's count is what the sample lacks today).
    truth = json.loads((SAMPLE / "truth.json").read_text())["items"]
    manifest = json.loads((SAMPLE / "manifest.json").read_text())
    photos = [SAMPLE / name for item in truth for name in item["photos"]]
    for job in [client.submit(photos, manifest) for _ in range(TOP_UP_JOBS)]:
        assert client.wait(job, timeout=600).status == "completed"
    population = 16 + 8 * TOP_UP_JOBS
    for _ in range(population):
        (group,) = client.metrics()["groups"]
        if group["overall"]["estimate"] is not None:
            break
        for item in client.review_items(sort="audit", limit=5).items:
            review_as_truth(client, item, truth)
    assert group["overall"]["estimate"]["method"] == "audit-sample", group["overall"]
    assert group["planning"]["unreviewed"] > 0

    page.locator(".sb-dash-refresh").click()
    expect(summary).to_contain_text(f"All {population} records: share right (95% range)")
    expect(summary).to_contain_text(f"{group['reviewed']} reviewed: ")
    for key, label in (("albumTitle", "Album title"), ("artistName", "Artist")):
        row = dashboard_row(page, label).first
        expect(row).to_contain_text(estimate_text(group["fields"][key]))
        expect(row).to_contain_text(reviewed_text(group["fields"][key], group["reviewed"]))
    overall = dashboard_row(page, "All six fields together")
    expect(overall).to_contain_text(estimate_text(group["overall"]))
    page.locator(".sb-plot img").wait_for(state="visible", timeout=30_000)
    page.locator(".sb-dashboard").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "workbench-dashboard.png"))


def record_on(page) -> tuple[str, int]:
    """The record a page shows, as its header names it: (the job id's first 8, item)."""
    import re

    text = page.locator(".sb-record-header").inner_text()
    m = re.search(r"job (\w{8}), item (\d+)", text)
    assert m, text
    return m.group(1), int(m.group(2))


def queue_texts(page) -> list[str]:
    """The labels of a page's list, as a person reads them (the browser shows its spaces as
    non-breaking ones)."""
    return [t.replace("\xa0", " ") for t in page.locator(".sb-queue option").all_text_contents()]


def pick_on(page, record: tuple[str, int]) -> None:
    """Pick a record in the page's list (refreshed first), by the job and item its label
    names."""
    import re

    page.locator(".sb-refresh").click()
    page.wait_for_timeout(500)
    labels = queue_texts(page)
    wanted = re.compile(rf"job {record[0]} #{record[1]}(\D|$)")
    found = [i for i, t in enumerate(labels) if wanted.search(t)]
    assert len(found) == 1, (record, labels)
    page.locator(".sb-queue select").select_option(index=found[0])


def save_and_wait(page, record: tuple[str, int]) -> None:
    from playwright.sync_api import expect

    page.click(".sb-save")
    expect(page.locator(".sb-review-message")).to_contain_text(
        f"Saved job {record[0]} item {record[1]}", timeout=30_000
    )


def holders(client: Client, users: set[str], timeout: float = 30) -> dict[str, tuple[str, int]]:
    """The one record each of `users` holds, as the queue shows it, once each holds one."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        items = client.review_items(limit=100).items
        held = {}
        for i in items:
            if i.lease is not None:
                held.setdefault(i.lease.holder, []).append((i.job_id[:8], i.item_index))
        if all(len(held.get(u, [])) == 1 for u in users):
            return {u: held[u][0] for u in users}
        assert time.monotonic() < deadline, held
        time.sleep(0.2)


def test_two_reviewers_side_by_side_in_two_pages(session, page, shots):
    """Two directors, each in a page of their own with their own key, review one queue: `next`
    never hands them the same record; picking the colleague's record says who has it (409);
    a record both edited shows the colleague's save beside one's own and offers to reload it
    (412), and nothing saved is lost."""
    import requests
    from playwright.sync_api import expect

    from scanbatch import server_file
    from scanbatch.names import Role
    from scanbatch.testing.servers import bearer
    from scanbatch.workbench.review import clock

    api = session["api"]
    director = Client(api, session["token"])
    manager = Client(api, server_file.read(session["data"]).token)  # this machine's own key
    made = requests.post(
        f"{api}/admin/keys",
        json={"user": "anna", "role": Role.MUSIC_DIRECTOR.value},
        headers=bearer(manager.token),
        timeout=30,
    )
    assert made.status_code == 201, made.text
    anna_token = made.json()["token"]
    manifest = json.loads((SAMPLE / "manifest.json").read_text())
    truth = json.loads((SAMPLE / "truth.json").read_text())["items"]
    photos = [SAMPLE / name for item in truth for name in item["photos"]]
    assert director.wait(director.submit(photos, manifest), timeout=600).status == "completed"

    # Page B: the same page, signed in again with anna's own token.
    b = page.context.browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    b.on("pageerror", lambda e: errors.append(str(e)))
    b.goto(session["page"])
    expect(b.get_by_text("Signed in to")).to_be_visible(timeout=60_000)
    token_box = b.locator(".sb-signin input[type=password]")
    token_box.fill(anna_token)
    b.get_by_role("button", name="Sign in").click()
    expect(token_box).to_have_value("", timeout=30_000)

    # Both on the Review tab, least confident first: each is handed a record of their own.
    header_b = b.locator(".sb-record-header")
    for p in (page, b):
        p.get_by_role("tab", name="Review").click()
        p.locator(".sb-order select").select_option(label="Least confident first")
    held = holders(director, {SESSION_USER, "anna"})
    for name, p in ((SESSION_USER, page), ("anna", b)):
        expect(p.locator(".sb-record-header")).to_contain_text(
            "job {}, item {} ·".format(*held[name]), timeout=30_000
        )
    seen = {SESSION_USER: [held[SESSION_USER]], "anna": [held["anna"]]}
    for _ in range(3):  # Save & next on both, in turns
        for name, p in ((SESSION_USER, page), ("anna", b)):
            save_and_wait(p, seen[name][-1])
            expect(p.locator(".sb-record-header")).not_to_contain_text(
                "job {}, item {} ·".format(*seen[name][-1]), timeout=30_000
            )
            seen[name].append(record_on(p))
    assert not set(seen[SESSION_USER]) & set(seen["anna"]), seen
    reviewed = director.review_items(state="reviewed", limit=100).items
    by_key = {(i.job_id[:8], i.item_index): i for i in reviewed}
    for name, records in seen.items():
        for record in records[:-1]:  # saved once, by the one it was handed to
            assert by_key[record].review.reviewer == name
            assert by_key[record].review.revision == 1
    mine, hers = seen[SESSION_USER][-1], seen["anna"][-1]

    # Anna picks the director's record: told who has it and until when; hers stays open.
    queue = {(i.job_id[:8], i.item_index): i for i in director.review_items(limit=100).items}
    until = clock(queue[mine].lease.until)
    assert queue[mine].lease.holder == SESSION_USER and queue[hers].lease.holder == "anna"
    pick_on(b, mine)
    expect(b.locator(".sb-review-message")).to_contain_text(
        f"{SESSION_USER} is reviewing this record (until {until})", timeout=30_000
    )
    assert record_on(b) == hers
    locked = [
        t
        for t in queue_texts(b)
        if t.endswith(f" · {SESSION_USER} is reviewing it (until {until})")
    ]
    assert len(locked) == 1 and "job {} #{}".format(*mine) in locked[0]
    b.screenshot(path=str(shots / "workbench-review-taken.png"))

    # Both edit one record: the director types, her lease is freed (as its expiry would),
    # anna takes the record from the list, corrects it and saves first.
    artist = page.locator(".sb-field-artistName input")
    artist.fill("Fixed by the director")
    artist.press("Enter")
    page.wait_for_timeout(300)
    job_id, index = queue[mine].job_id, queue[mine].item_index
    manager.release_lease(job_id, index)
    pick_on(b, mine)
    expect(header_b).to_contain_text("job {}, item {} ·".format(*mine), timeout=30_000)
    theirs = b.locator(".sb-field-artistName input")
    theirs.fill("Fixed by anna")
    theirs.press("Enter")
    b.wait_for_timeout(300)
    save_and_wait(b, mine)

    # The director saves second: not over anna's, and she sees both.
    page.click(".sb-save")
    conflict = page.locator(".sb-conflict")
    expect(conflict).to_be_visible(timeout=30_000)
    (saved,) = director.review_history(job_id, index)
    assert saved.reviewer == "anna"
    expect(conflict).to_contain_text(
        f"anna saved this record at {clock(saved.reviewed_at)}, while you had it open"
    )
    row = conflict.locator("tr", has_text="Artist")
    expect(row).to_contain_text("Fixed by anna")
    expect(row).to_contain_text("Fixed by the director")
    expect(conflict.get_by_role("button", name="Reload their review")).to_be_visible()
    conflict.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "workbench-review-conflict.png"))
    assert record_on(page) == mine and artist.input_value() == "Fixed by the director"

    # Reload their review: anna's values in the form; a save goes on from hers.
    page.click(".sb-reload")
    expect(artist).to_have_value("Fixed by anna", timeout=30_000)
    expect(conflict).to_be_hidden()
    save_and_wait(page, mine)
    history = sorted(director.review_history(job_id, index), key=lambda r: r.revision)
    assert [(r.reviewer, r.revision) for r in history] == [("anna", 1), (SESSION_USER, 2)]
    assert history[-1].fields["artistName"] == "Fixed by anna"
    b.close()
    assert not errors, errors


def test_ctrl_c_stops_both_and_leaves_no_process_behind(session):
    """After the browser test: the page's kernel, the server's kernels, Voilà and the server
    are all children of the launcher; one SIGINT (Ctrl-C) ends every one of them."""
    import psutil
    import requests

    proc = session["proc"]
    assert requests.get(f"{session['api']}/healthz", timeout=10).status_code == 200
    assert requests.get(session["page"], timeout=60).status_code == 200  # starts a kernel too
    tree = psutil.Process(proc.pid).children(recursive=True)

    def command(p: psutil.Process) -> str:
        try:
            return " ".join(p.cmdline())
        except psutil.ZombieProcess:  # a job's kernel that just ended, not reaped yet
            return ""

    names = " ".join(command(p) for p in tree)
    assert "voila" in names and "--serve-child" in names and "ipykernel" in names
    launcher = session["launcher"]
    assert launcher.stop(signal.SIGINT) == 0
    assert "Traceback" not in launcher.output and "ERROR" not in launcher.output, launcher.output
    _gone, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{session['api']}/healthz", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(session["page"], timeout=5)
    # The session's key ends with the session.
    from scanbatch.store import JobStore

    store = JobStore.open(session["data"] / "scanbatch.duckdb")
    try:
        assert store.keys.authenticate(session["token"]) is None
    finally:
        store.close()


def test_a_page_opened_with_no_server_starts_one_in_a_browser(tmp_path, shots, page):
    """`voila notebooks/workbench.ipynb` alone, no server and no token: the page starts the
    server of this machine, says so, and signs in; the server outlives the page. (In the
    module's browser: one playwright per process.)"""
    import socket
    import subprocess
    import sys
    import time

    import psutil
    from playwright.sync_api import expect

    from scanbatch import server_file
    from scanbatch.testing.servers import TEST_PYTHONPATH
    from tests.procs import wait_gone

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    api_port, page_port = ports
    env = {k: v for k, v in os.environ.items() if k not in ("SCANBATCH_URL", "SCANBATCH_TOKEN")}
    page_token = "the-page-s-token"
    env.update(
        JUPYTER_TOKEN=page_token,  # the page's door (voila.json), as `make run` opens it
        SCANBATCH_DATA_DIR=str(tmp_path / "data"),
        SCANBATCH_PORT=str(api_port),
        SCANBATCH_EXTRACTOR="fake",
        PYTHONPATH=TEST_PYTHONPATH,
    )
    voila = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            "notebooks/workbench.ipynb",
            "--no-browser",
            f"--port={page_port}",
            "--Voila.ip=127.0.0.1",
            "--Voila.log_level=WARN",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    data_dir = tmp_path / "data"
    try:
        bare = page.context.browser.new_page(viewport={"width": 1280, "height": 900})
        deadline = time.monotonic() + 60
        while True:  # Voilà listens a second or two after it starts
            try:
                bare.goto(f"http://127.0.0.1:{page_port}/?token={page_token}")
                break
            except Exception:
                assert time.monotonic() < deadline and voila.poll() is None
                time.sleep(0.3)
        expect(bare.get_by_text("Started a scanbatch server on this machine")).to_be_visible(
            timeout=120_000
        )
        expect(bare.get_by_role("tab", name="Review")).to_be_visible()
        bare.screenshot(path=str(shots / "workbench-started-server.png"))
        bare.close()
        started = server_file.read(data_dir)
        assert started is not None
        assert Client(started.url, started.token).review_items(limit=1).total == 0
        os.killpg(voila.pid, signal.SIGTERM)
        voila.wait(timeout=60)
        # The page is gone; the server it started still answers, until it is stopped.
        assert Client(started.url, started.token).health()["status"]
    finally:
        if voila.poll() is None:
            os.killpg(voila.pid, signal.SIGTERM)
            voila.wait(timeout=60)
        left = server_file.read(data_dir)
        if left is not None and psutil.pid_exists(left.pid):
            tree = [left.pid, *(c.pid for c in psutil.Process(left.pid).children(recursive=True))]
            os.killpg(left.pid, signal.SIGTERM)
            assert wait_gone(tree, timeout=30) == []


def test_a_record_whose_photos_were_pruned_shows_why_in_their_place(page, shots, tmp_path):
    """A launcher on a data folder whose old unreviewed records' photos its server pruned at
    start (SCANBATCH_KEEP_PHOTOS_DAYS): the review tab says so where the photos were, and
    shows no image, broken or not."""
    from playwright.sync_api import expect

    from tests.test_retention import built

    root = copy_work_tree(tmp_path / "checkout")
    built(root / "data")  # its least confident record, a failed one, lost its photos
    launcher = Launcher(root, SCANBATCH_EXTRACTOR=EXTRACTOR, SCANBATCH_KEEP_PHOTOS_DAYS="30")
    launcher.start()
    tab = page.context.browser.new_page(viewport=VIEWPORT)
    try:
        tab.goto(launcher.banner["page"])
        tab.get_by_role("tab", name="Review").click()
        note = tab.locator(".sb-photo-note")
        expect(note.get_by_text("No photos")).to_be_visible(timeout=60_000)
        expect(note).to_contain_text("(older than 30 days, never reviewed)")
        expect(tab.locator(".sb-photo-button")).to_have_count(0)
        assert [img for img in tab.evaluate(PHOTOS) if img["shown"]] == []
        tab.screenshot(path=str(shots / "workbench-review-pruned.png"))
    finally:
        tab.close()
        launcher.stop()
