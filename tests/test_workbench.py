"""The workbench's widgets in the kernel, no browser: set the upload's value, click the buttons,
and check what reached a real server on 127.0.0.1 (real notebook runs, fake extractor)."""

from __future__ import annotations

import html
import itertools
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from scanbatch.client import ApiError, Client
from scanbatch.testing.camera import browser_entry, camera_crate
from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import ROOT
from scanbatch.workbench import SOCKET_CAP_BYTES, Workbench

pytestmark = pytest.mark.slow


PAGE_ORIGIN = "http://127.0.0.1:8866"  # the page's address, as its browser would send it


@pytest.fixture(scope="module")
def live_server(server_data_dir, server_tokens):
    """The module's server, told which page may post batches from a browser (as `make run`
    tells it the workbench's address)."""
    from scanbatch.testing.servers import ServerProcess

    srv = ServerProcess(server_data_dir, SCANBATCH_PAGE_ORIGINS=PAGE_ORIGIN).start()
    yield srv
    srv.stop()


class Page:
    """Stands in for the browser half of the upload (static/uploader.js): it holds the files,
    tells the kernel their metadata as the script does, and posts each job the kernel hands it
    with the job's ticket, from the page's origin, reporting the answer as the script does."""

    def __init__(self, wb: Workbench, folder: Path, origin: str = PAGE_ORIGIN) -> None:
        self.panel = wb.upload
        self.folder = folder
        self.files: list[tuple[str, bytes]] = []
        self.outbox: list[dict] = []
        self.answers: list[requests.Response] = []
        self.origin = origin
        self.panel.uploader.origin = origin
        self.panel.uploader.send = lambda msg, buffers=None: self.outbox.append(msg)

    def choose(self, *files: tuple[str, bytes]) -> None:
        """Files as (name, bytes), written to disk first: the browser reads them there."""
        chosen = Path(tempfile.mkdtemp(dir=self.folder))
        for name, data in files:
            (chosen / name).write_bytes(data)
        self.choose_paths([chosen / name for name, _ in files])

    def choose_paths(self, paths: list[Path]) -> None:
        self.files = [(p.name, p.read_bytes()) for p in paths]
        entries = [{**browser_entry(p), "index": i} for i, p in enumerate(paths)]
        self.click("start", count=len(paths))
        for start in range(0, len(entries), 100):  # the script's chunks
            last = start + 100 >= len(entries)
            self.click("photos", photos=entries[start : start + 100], last=last)

    def records(self) -> list[list[str]]:
        """The records as the page shows them: each one's photo names."""
        shown = [m for m in self.outbox if m["kind"] == "records"][-1]["records"]
        return [[p["name"] for p in r["photos"]] for r in shown]

    def click(self, kind: str, **fields) -> None:
        self.panel._on_message({"kind": kind, **fields})

    def send(self, *, origin: str | None = None) -> None:
        """Send, then post every job handed over until none is left (two at a time in the
        real page; one after the other here)."""
        self.click("send")
        while jobs := [m for m in self.outbox if m["kind"] == "job"]:
            self.outbox = [m for m in self.outbox if m["kind"] != "job"]
            for job in jobs:
                self.post(job, origin=origin)

    def post(self, job: dict, *, origin: str | None = None) -> None:
        r = requests.post(
            job["url"],
            files=[("images", self.files[i]) for i in job["files"]],
            # as the script does: the mode goes only when it is the backlog
            data={
                "manifest": job["manifest"],
                **({"mode": "backlog"} if job["mode"] == "backlog" else {}),
            },
            headers={"Authorization": f"Bearer {job['ticket']}", "Origin": origin or self.origin},
            timeout=60,
        )
        self.answers.append(r)
        body = r.json()
        if r.status_code == 202:
            self.click("sent", job=job["job"], jobId=body["jobId"], totalItems=body["totalItems"])
        else:
            self.click("sent", job=job["job"], status=r.status_code, error=body["message"])


def signed_in(server, token) -> Workbench:
    wb = Workbench(server.url, token, sign_in=True)
    assert wb.client is not None, wb.signin.message.value
    return wb


def test_sign_in_problems_are_messages_on_the_page(live_server, server_tokens):
    wrong = Workbench(live_server.url, "sb_wrong", sign_in=True)
    assert wrong.client is None and wrong.tabs.layout.display == "none"
    assert "did not accept this token: Invalid or revoked API token" in wrong.signin.message.value
    dj = Workbench(live_server.url, server_tokens["dj"], sign_in=True)
    assert dj.client is None
    assert "may only read scans" in dj.signin.message.value
    assert "musicDirector or stationManager" in dj.signin.message.value
    down = Workbench("http://127.0.0.1:9", server_tokens["director"], sign_in=True)
    assert "Cannot reach the scanbatch server at http://127.0.0.1:9" in down.signin.message.value
    empty = Workbench(live_server.url, "", sign_in=False)
    empty.signin.button.click()
    assert "Enter your API token" in empty.signin.message.value
    # Signing in takes the token out of the password box: the client alone holds it.
    wb = signed_in(live_server, server_tokens["director"])
    assert wb.signin.token.value == "" and wb.tabs.layout.display == ""
    assert "Signed in to" in wb.signin.message.value
    assert server_tokens["director"] not in repr(wb.client)


def test_upload_groups_edits_and_sends_one_job_with_contexts(live_server, server_tokens, tmp_path):
    wb = signed_in(live_server, server_tokens["director"])
    page = Page(wb, tmp_path)
    page.choose(
        ("item00_1_center_label.heic", image_bytes("HEIF", size=(64, 48))),
        ("item00_0_front_cover.jpg", image_bytes()),
        ("IMG_0001.png", image_bytes("PNG")),
        ("IMG_0002.jpg", image_bytes()),
    )
    assert wb.upload.how.value == "pattern"  # not every name says its record
    wb.upload.how.value = "names"
    assert page.records() == [
        ["item00_0_front_cover.jpg", "item00_1_center_label.heic"],
        ["IMG_0001.png"],
        ["IMG_0002.jpg"],
    ]
    page.click("move", photo=3, to="previous")  # the back of record 2
    page.click("type", photo=3, type="back_cover")
    assert page.records()[1] == ["IMG_0001.png", "IMG_0002.jpg"]
    assert "4 photo(s) in 2 record(s)" in wb.upload.summary.value
    page.click("context", record=1, key="artistName", value="Can")
    page.click("context", record=1, key="albumTitle", value="Tago Mago")
    page.click("context", record=2, key="artistName", value="Neu!")
    page.send()
    assert [r.status_code for r in page.answers] == [202]
    (job_id,) = wb.upload.submitted
    assert wb.join()
    client = Client(live_server.url, server_tokens["director"])
    view = client.job(job_id)
    assert view.status == "completed" and view.total_items == 2
    assert view.results[0].extraction["artistName"]["value"] == "Can"  # the context arrived
    assert view.results[1].extraction["artistName"]["value"] == "Neu!"
    # The photo moved is the second of record 2, on the server too.
    assert client.photo(job_id, 1, 1) == page.files[3][1]
    bar = wb.progress.bars[job_id]
    assert (bar.bar.value, bar.bar.max, bar.bar.bar_style) == (2, 2, "success")
    assert "Done" in bar.label.value
    assert page.records() == [] and "Sent 1 job(s)" in wb.upload.message.value
    assert not wb.upload.uploader.busy
    # The finished job's records are in the review queue at once.
    assert {i.job_id for i in wb.review.items} >= {job_id}


def test_a_crate_of_twelve_records_becomes_two_jobs(live_server, server_tokens, tmp_path):
    wb = signed_in(live_server, server_tokens["other"])
    page = Page(wb, tmp_path)
    photos = [(f"item{i:02d}_0_front_cover.jpg", image_bytes()) for i in range(12)]
    page.choose(*photos)
    kilobytes = sum(len(data) for _, data in photos) / 1e3  # small photos are counted in kB
    assert (
        f"12 photo(s) in 12 record(s)</b>, {kilobytes:,.0f} kB, sent as 2 jobs"
        in wb.upload.summary.value
    )
    page.send()
    assert wb.join()
    client = Client(live_server.url, server_tokens["other"])
    sizes = sorted(client.job(j).total_items for j in wb.upload.submitted)
    assert sizes == [2, 10] and len(wb.progress.bars) == 2


def test_thirty_camera_records_are_grouped_by_time_and_sent_as_three_jobs(
    live_server, server_tokens, tmp_path
):
    """30 records x 3 photos named by a phone (IMG_4101.jpg …, HEIC among them) with their
    EXIF times: grouped by capture time without a typed record number, and each record on the
    server holds its own three photos, in the order taken."""
    crate = camera_crate(tmp_path / "crate", records=30, per_record=3)
    wb = signed_in(live_server, server_tokens["director"])
    page = Page(wb, tmp_path)
    page.choose_paths(sorted(crate))  # a file chooser lists them by name
    assert wb.upload.how.value == "time"
    taken = [[p.name for p in crate[i : i + 3]] for i in range(0, 90, 3)]
    assert page.records() == taken
    assert "90 photo(s) in 30 record(s)" in wb.upload.summary.value
    assert "sent as 3 jobs" in wb.upload.summary.value
    # What is typed for a record stays with it while a photo moves out and back.
    page.click("context", record=2, key="artistName", value="Can")
    page.click("move", photo=3, to="previous")
    assert [len(r) for r in page.records()[:3]] == [4, 2, 3]
    page.click("move", photo=3, to="next")
    assert page.records() == taken
    page.send()
    assert [r.status_code for r in page.answers] == [202] * 3
    client = Client(live_server.url, server_tokens["director"])
    first = client.wait(wb.upload.submitted[0], timeout=120)
    assert first.results[1].extraction["artistName"]["value"] == "Can"
    for n, job_id in enumerate(wb.upload.submitted):
        view = client.wait(job_id, timeout=120)
        assert view.total_items == 10
        for item in range(10):
            for place in range(3):
                original = crate[(n * 10 + item) * 3 + place].read_bytes()
                assert client.photo(job_id, item, place) == original
    assert wb.join()


def test_the_photos_never_reach_the_kernel_only_their_first_bytes(
    live_server, server_tokens, tmp_path
):
    """What the kernel holds of a selection: names, sizes, times and HEAD_BYTES of each file.
    Every message it sends the browser stays far under the websocket's cap, whatever the
    selection's size."""
    from scanbatch.workbench.grouping import HEAD_BYTES

    wb = signed_in(live_server, server_tokens["director"])
    page = Page(wb, tmp_path)
    big = image_bytes(size=(800, 600)) + b"\0" * 200_000
    page.choose(*((f"IMG_{i:04d}.jpg", big) for i in range(30)))
    assert all(len(p.head) == HEAD_BYTES for p in wb.upload.photos)
    assert all(p.size == len(big) for p in wb.upload.photos)
    page.send()
    assert len(wb.upload.submitted) == 1
    for msg in page.outbox:
        assert len(json.dumps(msg)) < 64 * 1024 < SOCKET_CAP_BYTES


def test_each_job_fails_or_goes_on_its_own_and_what_failed_stays_chosen(
    live_server, server_tokens, tmp_path
):
    """A job the server refuses shows the server's sentence, named by its records; the other
    jobs still go; Send again sends only what failed."""
    wb = signed_in(live_server, server_tokens["director"])
    page = Page(wb, tmp_path)
    page.choose(*((f"item{i:02d}_0_front_cover.jpg", image_bytes()) for i in range(13)))
    page.click("send")
    first, second = [m for m in page.outbox if m["kind"] == "job"]
    page.outbox.clear()
    page.post(first, origin="http://evil.example")  # another page: refused
    page.post(second)
    assert [r.status_code for r in page.answers] == [403, 202]
    refused = page.answers[0].json()["message"]
    says = html.unescape(wb.upload.message.value)
    assert "Sent 1 of 2 job(s)." in says and f"Job 1 (records 1–10): {refused}" in says
    assert len(wb.upload.submitted) == 1
    assert len(page.records()) == 10 and not wb.upload.uploader.busy
    # A ticket is good for one POST only: the same one again is refused as used.
    again = requests.post(
        first["url"],
        files=[("images", page.files[i]) for i in first["files"]],
        data={"manifest": first["manifest"]},
        headers={"Authorization": f"Bearer {first['ticket']}", "Origin": PAGE_ORIGIN},
        timeout=60,
    )
    assert again.status_code == 401, again.text
    page.send()
    assert len(wb.upload.submitted) == 2 and page.records() == []
    client = Client(live_server.url, server_tokens["director"])
    assert sorted(client.job(j).total_items for j in wb.upload.submitted) == [3, 10]


def test_a_page_the_server_does_not_know_is_told_which_setting(
    live_server, server_tokens, tmp_path
):
    wb = signed_in(live_server, server_tokens["director"])
    page = Page(wb, tmp_path, origin="http://127.0.0.1:1")
    page.choose(("item00_0_front_cover.jpg", image_bytes()))
    page.send()
    assert wb.upload.submitted == [] and page.answers == []
    assert "SCANBATCH_PAGE_ORIGINS" in wb.upload.message.value
    assert not wb.upload.uploader.busy


def test_the_page_refuses_what_the_server_refuses_in_the_same_words(
    live_server, server_tokens, tmp_path
):
    wb = signed_in(live_server, server_tokens["director"])
    page = Page(wb, tmp_path)
    bad = b"%PDF-1.4 not a photo"
    page.choose(("item00_0_front.jpg", image_bytes()), ("scan.pdf", bad))
    page.send()
    assert wb.upload.submitted == [] and page.answers == []
    page_says = wb.upload.message.value
    with pytest.raises(ApiError) as server_says:
        Client(live_server.url, server_tokens["director"]).submit(
            [("a.jpg", image_bytes()), ("scan.pdf", bad)],
            [{"imageCount": 1, "photoTypes": ["f"]}] * 2,
        )
    assert html.escape(server_says.value.message) in page_says and "scan.pdf" in page_says
    page.choose(*((f"item00_{p}_front.jpg", image_bytes()) for p in range(6)))
    page.send()
    assert "each item cannot exceed 5 images" in wb.upload.message.value
    assert wb.upload.submitted == [] and page.answers == []
    unsigned = Page(Workbench(live_server.url, "", sign_in=False), tmp_path)
    unsigned.choose(("item00_0_front.jpg", image_bytes()))
    unsigned.send()
    assert "Sign in first" in unsigned.panel.message.value


def test_the_choice_says_what_each_way_costs_and_how_long_it_takes():
    from scanbatch.models import BacklogView, JobMode, JobView
    from scanbatch.prices import load_prices
    from scanbatch.workbench.modes import (
        TYPICAL_INPUT_TOKENS,
        TYPICAL_OUTPUT_TOKENS,
        Server,
        describe,
        past_estimate,
        typical_estimate,
    )

    prices = load_prices()
    gemini = Server("gemini", can_batch=True)
    typical = typical_estimate(gemini, prices)
    one = prices.cost(
        "gemini", "gemini-3-flash-preview", TYPICAL_INPUT_TOKENS, TYPICAL_OUTPUT_TOKENS
    )
    assert typical.now == pytest.approx(1000 * one) and typical.backlog == pytest.approx(500 * one)
    text = describe(gemini, typical, prices)
    assert f"at the usual price (about {1000 * one:,.2f} USD per 1,000 records)" in text
    assert (
        f"<b>Backlog</b>: read by Google's Batch API at half the price (about {500 * one:,.2f} "
        "USD per 1,000 records), within 24 hours (usually much sooner); the records appear in the "
        "review queue when they are back." in text
    )
    assert "assuming about 4,000 input and 400 output tokens a record (three photos) on " \
        "gemini-3-flash-preview" in text  # fmt: skip
    assert f"Prices of {prices.date} (prices.json)" in text

    # The server's past jobs, when priced, say better: a backlog job's cost was the half price.
    def view(cost, completed, mode=JobMode.INTERACTIVE, state=None):
        backlog = BacklogView(state=state) if state else None
        return JobView.model_construct(cost=cost, completed_items=completed, mode=mode,
                                       backlog=backlog)  # fmt: skip

    past = past_estimate(
        [view(0.03, 10), view(0.015, 10, JobMode.BACKLOG, "answered"), view(None, 5)], prices
    )
    assert past.now == pytest.approx(3.0) and past.backlog == pytest.approx(1.5)
    assert past.basis == "what the last 2 job(s) cost (20 records read)"
    assert past_estimate([view(None, 4)], prices) is None
    # The offline reader: free, and the backlog runs as usual.
    ocr = Server("ocr", can_batch=False)
    text = describe(ocr, typical_estimate(ocr, prices), prices)
    assert "backlog jobs run as usual on this server" in text and "usual price (free)" in text


def test_a_backlog_job_is_sent_with_its_mode_and_its_bar_says_where_it_waits(
    live_server, server_tokens, tmp_path
):
    from scanbatch.models import BacklogView, JobView, Status
    from scanbatch.workbench.progress import JobBar

    wb = signed_in(live_server, server_tokens["director"])
    choice = wb.upload.choice
    # The test server reads with the `fake` extractor, which cannot batch.
    assert (choice.server.extractor, choice.server.can_batch) == ("fake", False)
    assert "this server reads with <code>fake</code>, which has no batch API, so backlog " \
        "jobs run as usual on this server" in choice.note.value  # fmt: skip
    assert "at the usual price (no price in the table)" in choice.note.value
    assert html.escape('no price for fake: add "extractors": {"fake": ...}') in choice.note.value
    assert choice.mode == "interactive"  # Read now unless chosen
    choice.toggle.value = "backlog"
    page = Page(wb, tmp_path)
    page.choose(("item00_0_front_cover.jpg", image_bytes()), ("item01_0_front_cover.jpg",
                image_bytes("PNG")))  # fmt: skip
    page.send()
    assert [r.status_code for r in page.answers] == [202]
    (job_id,) = wb.upload.submitted
    assert "Sent 1 job(s) to the backlog." in wb.upload.message.value
    assert wb.join()
    view = Client(live_server.url, server_tokens["director"]).job(job_id)
    assert view.mode == "backlog" and view.backlog.state == "interactive"
    assert view.status == "completed" and view.completed_items == 2
    assert wb.progress.bars[job_id].bar.value == 2
    # Read now again: no mode field at all.
    choice.toggle.value = "interactive"
    page.choose(("item00_0_front_cover.jpg", image_bytes()))
    page.send()
    assert wb.join()
    assert Client(live_server.url, server_tokens["director"]).job(wb.upload.submitted[-1]).mode \
        == "interactive"  # fmt: skip
    # A job waiting at Google: its state in words, no bar standing still.
    bar = JobBar("0123456789abcdef", 3)
    waiting = JobView.model_construct(
        job_id="0123456789abcdef", status=Status.PENDING, total_items=3, completed_items=0,
        failed_items=0, mode="backlog", backlog=BacklogView(state="running", batch="batches/x1"),
    )  # fmt: skip
    bar.update(waiting)
    assert bar.at_google and bar.bar.layout.display == "none"
    assert "3 record(s) waiting for Google's Batch API (state: running, Google batch " \
        "batches/x1)" in bar.label.value  # fmt: skip
    answered = waiting.model_copy(
        update={"backlog": BacklogView(state="answered"), "status": Status.PROCESSING,
                "completed_items": 1}
    )  # fmt: skip
    bar.update(answered)
    assert not bar.at_google and bar.bar.layout.display == "" and bar.bar.value == 1
    assert "1 of 3 record(s) read" in bar.label.value


def test_on_a_server_that_batches_a_backlog_job_waits_for_google_then_its_bar_fills(tmp_path):
    """The server reads with gemini, against the Batch API fake: the choice offers the half
    price, the job waits at Google (its bar says so, with the batch's state), then is read."""
    from scanbatch.testing.fake_batch import FakeBatchAPI
    from scanbatch.workbench.modes import Server, typical_estimate
    from tests.test_backlog import server_for, tokens_for, wait_for

    data_dir = tmp_path / "data"
    tokens = tokens_for(data_dir)
    with FakeBatchAPI(finish_after=None) as fake:
        server = server_for(data_dir, fake, SCANBATCH_PAGE_ORIGINS=PAGE_ORIGIN).start()
        try:
            wb = signed_in(server, tokens["director"])
            choice = wb.upload.choice
            assert choice.server == Server("gemini", can_batch=True)
            half = typical_estimate(choice.server, choice.prices).backlog
            assert (
                f"read by Google's Batch API at half the price (about {half:,.2f} USD per 1,000 "
                "records), within 24 hours" in choice.note.value
            )
            choice.toggle.value = "backlog"
            page = Page(wb, tmp_path)
            page.choose(("item00_0_front_cover.jpg", image_bytes()),
                        ("item01_0_front_cover.jpg", image_bytes("PNG")))  # fmt: skip
            page.send()
            (job_id,) = wb.upload.submitted
            bar = wb.progress.bars[job_id]
            wait_for(lambda: "state: submitted" in bar.label.value, 30, "the bar shows the batch")
            assert bar.at_google and bar.bar.layout.display == "none"
            assert "2 record(s) waiting for Google's Batch API (state: submitted, Google " \
                "batch batches/" in bar.label.value  # fmt: skip
            fake.finish()
            assert wb.join()
            assert not bar.at_google and bar.bar.value == 2 and "Done" in bar.label.value
            view = Client(server.url, tokens["director"]).job(job_id)
            assert view.mode == "backlog" and view.status == "completed"
        finally:
            server.stop()


def test_review_correct_match_save_next_reopen_and_measure(live_server, server_tokens):
    alice = Client(live_server.url, server_tokens["director"])
    job = alice.submit(
        [image_bytes(), image_bytes("PNG")],
        [
            {"imageCount": 1, "photoTypes": ["front_cover"], "context": {"artistName": "Nöel"}},
            {
                "imageCount": 1,
                "photoTypes": ["center_label"],
                "context": {"artistName": "Noël Coleman", "albumTitle": "Fevr"},
            },
        ],
    )
    alice.wait(job)
    wb = signed_in(live_server, server_tokens["other"])
    wb.tabs.selected_index = 1  # the Review tab loads the queue and the jobs to filter by
    wb.review.job.value = job
    review = wb.review
    assert [i.item_index for i in review.items] == [1, 0]  # 0.8 (title) before 0.9
    assert "Record 1 of 2" in review.header.value
    assert review.fields["albumTitle"].value == "Fevr"
    assert "0.80" in review.badges["albumTitle"].value
    assert "not read" in review.badges["labelName"].value
    assert wb.join()
    assert all(b.children[0].value[:3] == b"\xff\xd8\xff" for b in review.thumbs.children)
    review.thumbs.children[0].children[1].click()  # the photo's button: show it large
    assert wb.join() and review.large.layout.display == "" and review.large.value

    review.fields["albumTitle"].value = "Fever"
    review.fields["labelName"].value = "Rooftop Sound"
    review.search.value = "coleman fever"
    (album_label, album) = review.results.options[0]
    assert album.id == 1206 and "COL 1/2" in album_label
    review.use_button.click()
    review.note.value = "label read wrong"
    review.save_button.click()
    assert "Saved job" in review.message.value
    assert "Record 1 of 1" in review.header.value  # the next one, already shown
    assert review.fields["artistName"].value == "Nöel"

    saved = Client(live_server.url, server_tokens["other"]).review_history(job, 1)[0]
    assert saved.fields["albumTitle"] == "Fever" and saved.matched_album_id == 1206
    assert saved.verdicts["albumTitle"] == "corrected" and saved.note == "label read wrong"
    assert saved.reviewer == "bob"

    # Reopen it among the reviewed ones: the review's values come back, and saving again
    # keeps the first as history.
    review.state.value = "reviewed"
    assert [i.item_index for i in review.items] == [1]
    assert review.fields["albumTitle"].value == "Fever"
    assert "Revision 1".lower() in review.header.value.lower()
    assert "COL 1/2" in review.album.value
    review.no_album_button.click()
    review.save_button.click()
    history = Client(live_server.url, server_tokens["other"]).review_history(job, 1)
    assert [r.revision for r in history][:2] in ([2, 1], [1, 2])
    assert {r.matched_album_id for r in history} == {1206, None}

    # Mine/everyone's: bob has uploaded nothing with finished records in this job.
    review.who.value = "mine"
    assert all(i.user_id == "bob" for i in review.items)

    wb.tabs.selected_index = 2  # the dashboard refreshes when shown
    dash = wb.dashboard
    assert dash.body["reviewedItems"] >= 1
    assert "reviewed record(s)" in dash.summary.value
    assert dash.plot.outputs[0]["data"]["image/png"]
    dash.group_by.value = "extractor"
    assert dash.body["groups"][0]["group"] == "fake"


def test_voila_keeps_the_websocket_cap_small_since_no_photo_goes_through_it():
    config = json.loads((ROOT / "voila.json").read_text())
    cap = config["Voila"]["tornado_settings"]["websocket_max_message_size"]
    assert cap == SOCKET_CAP_BYTES <= 16 * 1024 * 1024


def test_the_page_and_the_audit_trail_write_a_shelf_code_alike():
    from scanbatch.kernel_report import library_code
    from scanbatch.models import MatchedAlbum
    from scanbatch.workbench.review import album_text

    row = {"code_letters": "BYR", "code_artist_number": 3, "code_number": None}
    album = MatchedAlbum(id=1, artist_name="The Byrds", album_title="Fifth Dimension", **row)
    assert album.library_code == library_code(row) == "BYR 3"
    assert album_text(album) == "The Byrds — Fifth Dimension · BYR 3"
    assert MatchedAlbum(id=2, artist_name="A", album_title="B").library_code == ""


# -- the audit estimates on the page: pure functions on a body of the metrics route's shape --


def _estimate(accuracy: float, low: float, high: float, two: int = 310) -> dict:
    return {
        "accuracy": accuracy,
        "low": low,
        "high": high,
        "method": "audit-sample",
        "auditReviews": 40,
        "reviewsForTwoPoints": two,
    }


def _bucket(lo: float, hi: float, n: int, correct: int, low: float, high: float) -> dict:
    return {
        "confidenceFrom": lo,
        "confidenceTo": hi,
        "n": n,
        "correct": correct,
        "accuracy": correct / n,
        "low": low,
        "high": high,
        "meanConfidence": (lo + hi) / 2,
    }


# The reviewed-only reliability buckets, as scanbatch.evaluate gives them (no range).
REVIEWED_EDGES = (0.0, 0.5, 0.7, 0.8, 0.9, 1.0)


def _reviewed_buckets(n: int, correct: int) -> list[dict]:
    """All the reviewed fields in the top bucket, none in the others."""
    out = []
    for lo, hi in itertools.pairwise(REVIEWED_EDGES):
        top = hi == 1.0
        out.append(
            {
                "confidenceFrom": lo,
                "confidenceTo": hi,
                "n": n if top else 0,
                "correct": correct if top else 0,
                "accuracy": correct / n if top else None,
                "meanConfidence": 0.93 if top else None,
            }
        )
    return out


def metrics_body(group: str | None = None) -> dict:
    """What GET /library/scan/review/metrics returns, by hand: 5,000 finished records, 52
    reviewed of which 40 from the audit sample, the label's accuracy dropping last week."""
    from scanbatch.names import FIELDS

    fields = {}
    for i, name in enumerate(FIELDS):
        fields[name] = {
            "n": 50,
            "exact": 40,
            "accuracy": 0.8,
            "similarity": 0.9,
            "missing": 2,
            "spurious": 1,
            "calibration": _reviewed_buckets(50, 40),
            "ece": 0.05,
            "reviewedAccuracy": 0.62 + i / 100,
            "estimate": _estimate(0.94 - i / 100, 0.91 - i / 100, 0.96 - i / 100),
            "estimateNote": None,
            "wrongLeft": {"expected": 7.2, "low": 3.1, "high": 12.5},
            "threshold": {"confidence": 0.97, "noReviewNeeded": 120, "note": None},
        }
    weeks = [("2026-11-02", 0.95), ("2026-11-09", 0.94), ("2026-11-16", 0.95), ("2026-11-23", 0.8)]
    g = {
        "group": group,
        "items": 52,
        "results": 52,
        "failed": 0,
        "missingResults": 0,
        "population": 5000,
        "reviewed": 52,
        "auditReviews": 40,
        "fields": fields,
        "match": {
            "in_catalog": 40,
            "in_catalog_correct": 30,
            "wrong_album": 4,
            "not_matched": 6,
            "not_in_catalog": 12,
            "not_in_catalog_correct": 6,
            "false_match": 6,
            "accuracy": 0.7,
            "precision": 0.9,
            "recall": 0.8,
            "reviewedAccuracy": 0.7,
            "estimate": _estimate(0.88, 0.8, 0.93),
            "estimateNote": None,
        },
        "overall": {
            "n": 300,
            "exact": 250,
            "accuracy": 0.83,
            "similarity": 0.9,
            "missing": 12,
            "spurious": 6,
            "reviewedAccuracy": 0.66,
            "estimate": _estimate(0.934, 0.91, 0.955),
            "estimateNote": None,
        },
        "calibration": _reviewed_buckets(300, 250),
        "ece": 0.04,
        "planning": {
            "wrongFieldsLeft": {"expected": 31.0, "low": 20.2, "high": 45.9},
            "unreviewed": 4948,
            "needsReview": 80,
            "reviewsForTwoPoints": 310,
        },
        "auditCalibration": [
            _bucket(0.6, 0.8, 20, 12, 0.39, 0.78),
            _bucket(0.9, 0.95, 40, 37, 0.80, 0.97),
        ],
        "weekly": [
            {
                "week": week,
                "population": 120,
                "reviewed": 30,
                "auditReviews": 25,
                "overall": _estimate(a, a - 0.04, a + 0.03),
                "fields": {f: _estimate(a, a - 0.05, a + 0.04) for f in FIELDS},
                "match": _estimate(a - 0.1, a - 0.2, a),
            }
            for week, a in weeks
        ],
        "drift": {
            "overall": False,
            "fields": {f: f == "labelName" for f in FIELDS},
            "match": False,
        },
    }
    return {"groupBy": "none", "reviewedItems": 52, "population": 5000, "groups": [g]}


def table_rows(page: str) -> dict[str, list[str]]:
    """The estimates table as {row label: [cell texts]}."""
    import re

    table = page.split('class="sb-estimates"', 1)[1].split("</table>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]:
        cells = [
            html.unescape(re.sub(r"<[^>]+>", "", c))
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_dashboard_shows_the_all_records_estimate_beside_the_reviewed_only_figure():
    from scanbatch.workbench.dashboard import summary_html

    page = summary_html(metrics_body())
    # The two columns say which is which, in words a director cannot mix up.
    assert "All 5,000 records: share right (95% range)" in page
    assert "Reviewed records only: share right" in page
    assert (
        "52 reviewed: 40 in the audit sample, 12 outside it (picked e.g. least confident first)"
        in page
    )
    rows = table_rows(page)
    assert rows["Label"][:2] == ["92% (89–94%)", "64% of 52"]
    assert rows["All six fields together"][:2] == ["93% (91–96%)", "66% of 52"]
    assert rows["Catalog match"][:2] == ["88% (80–93%)", "70% of 52"]
    # Planning: the threshold, the wrong fields left, the reviews for ±2 points.
    assert rows["Label"][2:] == [
        "confidence 0.97 or more: 120 record(s) need no review",
        "about 7 (3–12)",
        "310",
    ]
    assert rows["All six fields together"][2:4] == [
        "80 record(s) still need review",
        "about 31 (20–46)",
    ]
    assert "Review 310 more audit record(s) to know every figure here within ±2 points." in page
    assert "expect about 31 (20–46) wrong fields" in page
    assert "4,948 records nobody reviewed" in page
    assert "80 of them need review" in page and "sure enough of the other 4,868." in page
    # No jargon without its explanation; percentages, not 0.934.
    assert "0.934" not in page and "93% (91–96%)" in page
    for word in ("ECE", "±2 points", "95% range", "Audit sample"):
        assert word in page.split("<small>")[-1], word


def test_every_record_reviewed_and_already_two_points():
    from scanbatch.workbench.dashboard import estimate_text, two_points_text

    entry = {"estimate": {**_estimate(0.9, 0.9, 0.9, two=0), "method": "all-reviewed"}}
    assert estimate_text(entry) == "90% (every record reviewed)"
    assert two_points_text(0) == "Every figure here is already known within ±2 points."
    assert two_points_text(None) == ""


def test_a_missing_estimate_shows_its_note_instead():
    from scanbatch.workbench.dashboard import summary_html

    body = metrics_body()
    g = body["groups"][0]
    # Worded as the server words it (scanbatch.estimates). The server gives every row of a
    # group an estimate or none alike; the page still reads each row alone.
    upc_note = (
        "Review at least 12 more record(s) from the Audit sample for an estimate over all "
        "5,000 records (the audit sample has 18)."
    )
    g["fields"]["upc"].update(estimate=None, estimateNote=upc_note)
    rows = table_rows(summary_html(body))
    assert rows["UPC"][0] == upc_note
    assert rows["UPC"][1] == "67% of 52"  # the reviewed-only figure stays
    # Nothing estimated yet, one note for all: said once, above the table.
    note = (
        "Review at least 30 more record(s) from the Audit sample for an estimate over all "
        "5,000 records (the audit sample has 0)."
    )
    for entry in (*g["fields"].values(), g["match"], g["overall"]):
        entry.update(estimate=None, estimateNote=note)
    g["planning"] = None
    page = summary_html(body)
    assert page.count(note) == 1 and "is not known yet: " + note in page
    assert {cells[0] for cells in table_rows(page).values()} == {"not known yet (see above)"}


def test_drift_is_a_visible_warning_naming_what_got_worse():
    from scanbatch.workbench.dashboard import drift_warning, summary_html

    body = metrics_body()
    page = summary_html(body)
    assert 'class="sb-drift"' in page and "got worse in the latest week</b> (Label)" in page
    g = body["groups"][0]
    g["drift"]["overall"] = True
    assert "(all fields together, Label)" in drift_warning(g)
    g["drift"] = {"overall": False, "fields": {f: False for f in g["fields"]}, "match": False}
    assert drift_warning(g) == "" and "sb-drift" not in summary_html(body)


def test_a_field_with_no_threshold_says_so():
    from scanbatch.workbench.dashboard import summary_html

    body = metrics_body()
    # As the server words it (scanbatch.estimates.threshold).
    note = (
        "No such threshold yet: to show that the reader is right 99% of the time above some "
        "confidence takes about 546 audit reviews above it without a mistake (the audit sample "
        "has 0 so far)."
    )
    body["groups"][0]["fields"]["reviewText"]["threshold"] = {
        "confidence": None,
        "noReviewNeeded": 0,
        "note": note,
    }
    body["groups"][0]["fields"]["upc"]["threshold"] = {
        "confidence": None,
        "noReviewNeeded": 0,
        "note": note,
    }
    page = summary_html(body)
    # The cell says "not yet"; the note, why and what it takes, stands once under the table
    # for every field it concerns.
    rows = table_rows(page)
    assert rows["Review sticker"][2] == rows["UPC"][2] == "not yet (see below)"
    assert rows["Label"][2] == "confidence 0.97 or more: 120 record(s) need no review"
    assert page.count(html.escape(note)) == 1
    assert "Sure enough to skip review — not known yet</b>" in page
    assert f"Review sticker, UPC: {html.escape(note)}" in page


def test_the_figure_renders_estimates_audit_reliability_and_weeks():
    import io

    from PIL import Image

    from scanbatch.workbench.dashboard import figure_png

    body = metrics_body("v1")
    two = metrics_body("v2")["groups"][0]
    two["drift"]["overall"] = True
    body["groups"].append(two)
    png = figure_png(body)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).size[0] <= 1200  # inside a 1280 px wide page
    # Nothing estimated, no audit reviews, no weeks: still a figure, saying so.
    g = body["groups"][0]
    for entry in (*g["fields"].values(), g["match"], g["overall"]):
        entry["estimate"] = None
    g.update(auditCalibration=[], weekly=[])
    assert figure_png({**body, "groups": [g]})[:4] == b"\x89PNG"


def test_the_review_tab_says_which_order_it_shows_and_why():
    from scanbatch.workbench.review import ReviewPanel, count_text, why_text

    assert "least confident first" in count_text(5, 5, "unreviewed", "confidence")
    assert (
        count_text(5, 5, "unreviewed", "newest") == "<b>5</b> record(s) — to review, newest first."
    )
    audit = count_text(300, 100, "needsReview", "audit")
    assert "needs review, in the audit sample's order" in audit
    assert "(showing the first 100)" in audit and "least confident" not in audit
    assert why_text("unreviewed", "confidence") == ""
    assert "fair sample" in why_text("unreviewed", "audit")
    assert "99%" in why_text("needsReview", "newest")

    panel = ReviewPanel()  # no client: the choices still explain themselves
    assert [v for _label, v in panel.order.options] == ["confidence", "newest", "audit"]
    assert "needsReview" in [v for _label, v in panel.state.options]
    panel.order.value = "audit"
    assert "the Dashboard can say how good the reader is on all your scans" in panel.why.value
    panel.order.value = "newest"
    assert panel.why.value == ""


def key_paths(value: object, prefix: str = "") -> set[str]:
    """Every key of a JSON body as a path ('groups[].fields.upc.estimate.low'): its shape."""
    paths = set()
    if isinstance(value, dict):
        for k, v in value.items():
            paths |= {f"{prefix}.{k}"} | key_paths(v, f"{prefix}.{k}")
    elif isinstance(value, list):
        for v in value:
            paths |= key_paths(v, f"{prefix}[]")
    return paths


def test_the_audit_order_needs_review_and_the_real_metrics_body(live_server, server_tokens):
    """Against the real server: the Review tab's Audit sample is the route's `sort=audit`
    order, Needs review its `state=needsReview`, and the hand-made body the tests above use
    has exactly the keys the metrics route returns (when every estimate exists)."""
    import requests

    from scanbatch.names import FIELDS
    from scanbatch.testing.servers import bearer

    since = datetime.now(UTC).isoformat()
    api = Client(live_server.url, server_tokens["director"])
    mine = set()
    for j in range(4):
        records = [
            {
                "imageCount": 1,
                "photoTypes": ["front_cover"],
                "context": {"artistName": f"Audit {j}-{i}", "albumTitle": f"Take {i}"},
            }
            for i in range(10)
        ]
        job = api.submit([image_bytes() for _ in records], records)
        assert api.wait(job).status == "completed"
        mine |= {(job, i) for i in range(10)}

    wb = signed_in(live_server, server_tokens["director"])
    wb.tabs.selected_index = 1
    review = wb.review

    def ids(items) -> list[tuple[str, int]]:
        return [(i.job_id, i.item_index) for i in items]

    review.order.value = "audit"
    audit = api.review_items(sort="audit", limit=100)
    assert ids(review.items) == ids(audit.items) and len(audit.items) >= 40
    assert ids(audit.items) != ids(api.review_items(sort="confidence", limit=100).items)
    assert "in the audit sample's order" in review.count.value
    assert "fair sample" in review.why.value
    review.state.value = "needsReview"
    needs = api.review_items(state="needsReview", sort="audit", limit=100)
    assert ids(review.items) == ids(needs.items) and needs.total >= 40  # no thresholds yet
    assert "needs review, in the audit sample's order" in review.count.value

    # Save three from the page, as `next` hands them out: the audit order's first three that
    # no other reviewer holds (earlier tests' pages may still hold a lease on one).
    free = [
        (i.job_id, i.item_index)
        for i in needs.items
        if i.lease is None or i.lease.holder == "alice"
    ]
    first = free[:3]
    for expected in first:
        shown = review.items[review.current]
        assert (shown.job_id, shown.item_index) == expected
        review.save_button.click()
        assert "Saved job" in review.message.value
    reviewed = api.review_items(state="reviewed", sort="audit", limit=100)
    assert set(first) <= set(ids(reviewed.items))
    assert ids(review.items)[:1] == [k for k in ids(needs.items) if k not in first][:1]

    # Review the rest of this test's records through the API (the truth: what was read, but
    # a quarter of the artists wrong), then read the body of exactly those records.
    # Job by job: the module's other tests leave more than a page of records in the queue.
    left = [i for job in sorted({j for j, _ in mine}) for i in api.review_items(job_id=job).items]
    for k, item in enumerate(left):
        if (item.job_id, item.item_index) not in mine:
            continue
        fields = {n: ((item.extraction or {}).get(n) or {}).get("value") for n in FIELDS}
        if k % 4 == 0:
            fields["artistName"] = "Someone Else"
        api.save_review(item.job_id, item.item_index, fields, None)
    r = requests.get(
        f"{live_server.url}/library/scan/review/metrics",
        params={"since": since},
        headers=bearer(server_tokens["director"]),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    real = r.json()
    (group,) = real["groups"]
    assert (group["population"], group["reviewed"]) == (40, 40)
    assert group["overall"]["estimate"]["method"] == "all-reviewed"
    assert key_paths(real) == key_paths(metrics_body())

    # The page reads the real body as it reads the hand-made one.
    from scanbatch.workbench.dashboard import figure_png, summary_html

    rows = table_rows(summary_html(real))
    assert rows["Album title"][:2] == ["100% (every record reviewed)", "100% of 40"]
    assert figure_png(real)[:4] == b"\x89PNG"


def test_a_group_with_no_value_is_named_for_what_it_lacks_and_nothing_is_sure_enough():
    from scanbatch.workbench.dashboard import group_html, group_name, summary_html

    body = metrics_body()
    (g,) = body["groups"]
    assert group_name(g) == "All records" and "<b>All records</b> — 5,000" in summary_html(body)
    # The OCR reader has no prompt version: its records are not "all" of them.
    assert group_name(g, "promptVersion") == "no prompt version"
    assert "<b>no prompt version</b>" in group_html(g, "promptVersion")
    assert group_name({**g, "group": "v2"}, "promptVersion") == "v2"
    g["planning"]["needsReview"] = g["planning"]["unreviewed"]
    page = summary_html(body)
    assert "All of them still need review: no field has a confidence yet" in page
    assert "sure enough of the other" not in page


# -- several reviewers on one queue: leases and versions, two pages side by side --------------


def crate(api: Client, n: int, tag: str) -> str:
    """A finished job of `n` one-photo records, the fake reader echoing each one's context."""
    records = [
        {
            "imageCount": 1,
            "photoTypes": ["front_cover"],
            "context": {"artistName": f"{tag} {i}", "albumTitle": f"Side {i}"},
        }
        for i in range(n)
    ]
    job = api.submit([image_bytes() for _ in records], records)
    assert api.wait(job).status == "completed"
    return job


def reviewing(server, token, job: str) -> Workbench:
    """A reviewer's page on the Review tab, showing only `job`'s records."""
    wb = signed_in(server, token)
    wb.tabs.selected_index = 1
    wb.review.job.value = job
    assert wb.review.shown is not None, wb.review.message.value
    return wb


def record_of(wb: Workbench) -> tuple[str, int]:
    item = wb.review.shown
    assert item is not None, wb.review.message.value
    return (item.job_id, item.item_index)


def leases(api: Client, job: str) -> dict[int, str | None]:
    """Who holds each of the job's unreviewed records, as the queue says."""
    items = api.review_items(state="all", job_id=job, limit=100).items
    return {i.item_index: i.lease.holder if i.lease else None for i in items}


def label_of(wb: Workbench, key: tuple[str, int]) -> str:
    (label,) = [label for label, k in wb.review.queue.options if k == key]
    return label


def test_two_reviewers_are_handed_different_records_and_see_who_is_on_which(
    live_server, server_tokens
):
    from scanbatch.workbench.review import clock

    api = Client(live_server.url, server_tokens["director"])
    job = crate(api, 4, "Lease")
    alice = reviewing(live_server, server_tokens["director"], job)
    bob = reviewing(live_server, server_tokens["other"], job)
    a, b = record_of(alice), record_of(bob)
    assert a != b
    # The least confident first: alice asked first and got the first, bob the next free one.
    order = [(i.job_id, i.item_index) for i in api.review_items(job_id=job, limit=100).items]
    assert [a, b] == order[:2]
    assert leases(api, job) == {a[1]: "alice", b[1]: "bob", order[2][1]: None, order[3][1]: None}

    # Each list says who is on which record, refreshed with the list.
    alice.review.refresh_button.click()
    until = {i.item_index: i.lease.until for i in alice.review.items if i.lease}
    assert label_of(alice, b).endswith(f" · bob is reviewing it (until {clock(until[b[1]])})")
    assert label_of(alice, a).endswith(f" · ✎ you (until {clock(until[a[1]])})")
    assert "reviewing" not in label_of(alice, order[2]) and "✎" not in label_of(alice, order[2])
    assert f"Yours until {clock(until[a[1]])}" in alice.review.header.value

    # Bob picks alice's record: told who has it and until when, and stays on his own.
    bob.review.queue.value = a
    assert f"alice is reviewing this record (until {clock(until[a[1]])})" in html.unescape(
        bob.review.message.value
    )
    assert record_of(bob) == b and bob.review.queue.value == b
    assert leases(api, job)[b[1]] == "bob" and leases(api, job)[a[1]] == "alice"

    # A free record picked from the list is leased; the one left unsaved is released.
    bob.review.queue.value = order[3]
    assert record_of(bob) == order[3]
    assert leases(api, job) == {a[1]: "alice", b[1]: None, order[2][1]: None, order[3][1]: "bob"}
    # Changing the filters leaves the record too: bob holds one lease, the one he was handed.
    bob.review.order.value = "newest"
    held = {i: h for i, h in leases(api, job).items() if h == "bob"}
    assert list(held) == [record_of(bob)[1]]
    bob.review.order.value = "confidence"

    # Save & next on both pages, in turns, until nothing is left: never the same record.
    seen = {"alice": [record_of(alice)], "bob": [record_of(bob)]}
    for _ in range(4):
        for name, wb in (("alice", alice), ("bob", bob)):
            if wb.review.shown is None:
                continue
            wb.review.save_button.click()
            assert "Saved" in wb.review.message.value, wb.review.message.value
            if wb.review.shown is not None:
                seen[name].append(record_of(wb))
    assert not set(seen["alice"]) & set(seen["bob"]), seen
    assert set(seen["alice"]) | set(seen["bob"]) == set(order)
    for _job, index in order:  # each record saved once: nobody's save replaced another's
        assert len(api.review_history(job, index)) == 1
    assert leases(api, job) == dict.fromkeys(range(4))
    # Alice ran out first, while bob had the last record: she is told who has it.
    assert alice.review.message.value.endswith(
        "right. Every record left with these filters is being reviewed right now by bob. "
        "Refresh in a while.</div>"
    )
    assert "Saved job" in alice.review.message.value
    assert bob.review.message.value.endswith(
        "right. Nothing left to review with these filters.</div>"
    )
    assert alice.review.record.layout.display == "none"
    alice.review.refresh_button.click()
    assert "Nothing left to review with these filters." in alice.review.message.value


def test_a_colleague_s_save_in_between_is_shown_beside_mine_and_never_overwritten(
    live_server, server_tokens
):
    from scanbatch.workbench.review import clock

    api = Client(live_server.url, server_tokens["director"])
    manager = Client(live_server.url, server_tokens["manager"])
    job = crate(api, 2, "Stale")
    alice = reviewing(live_server, server_tokens["director"], job)
    record = record_of(alice)
    alice.review.fields["artistName"].value = "Alice's artist"
    alice.review.fields["labelName"].value = "Same label"
    # Alice's lease ends while she types (a station manager frees the record, as the
    # lease's expiry would); bob takes it from the list and saves first.
    manager.release_lease(*record)
    bob = reviewing(live_server, server_tokens["other"], job)
    if record_of(bob) != record:
        bob.review.queue.value = record
    assert record_of(bob) == record, bob.review.message.value
    bob.review.fields["artistName"].value = "Bob's artist"
    bob.review.fields["labelName"].value = "Same label"
    bob.review.note.value = "checked the sleeve"
    bob.review.save_button.click()
    assert "Saved job" in bob.review.message.value
    (theirs,) = api.review_history(*record)

    alice.review.save_button.click()
    # Nothing saved over bob's: his review is the only one, and alice's typing is still there.
    assert [r.reviewer for r in api.review_history(*record)] == ["bob"]
    assert alice.review.fields["artistName"].value == "Alice's artist"
    assert record_of(alice) == record
    message = html.unescape(alice.review.message.value)
    assert f"Not saved: bob saved this record at {clock(theirs.reviewed_at)}" in message
    assert alice.review.conflict.layout.display == ""
    assert "Yours until" not in alice.review.header.value  # her lease is gone, and she is told
    box = html.unescape(alice.review.conflict_text.value)
    assert f"bob saved this record at {clock(theirs.reviewed_at)}, while you had it open" in box
    assert "<th>bob saved</th><th>You typed</th>" in box
    # Each field: bob's value beside alice's, the differing ones highlighted.
    assert (
        '<tr style="background:#fff4e0;font-weight:bold"><td>Artist</td>'
        "<td>Bob's artist</td><td>Alice's artist</td></tr>"
    ) in box
    assert "<tr><td>Label</td><td>Same label</td><td>Same label</td></tr>" in box
    assert "<td>Note</td><td>checked the sleeve</td><td>—</td>" in box

    # Reload their review: bob's values in the form, with the version his save made.
    alice.review.reload_button.click()
    assert alice.review.conflict.layout.display == "none"
    assert alice.review.fields["artistName"].value == "Bob's artist"
    assert alice.review.note.value == "checked the sleeve"
    assert alice.review.shown.version == theirs.version
    assert "Reviewed by bob (revision 1)" in alice.review.header.value
    assert "Yours until" in alice.review.header.value  # reloading took the record's lease
    assert "Loaded bob's review" in html.unescape(alice.review.message.value)
    alice.review.fields["catalogNumber"].value = "SL 42"
    alice.review.save_button.click()
    assert "Saved job" in alice.review.message.value
    history = sorted(api.review_history(*record), key=lambda r: r.revision)
    assert [(r.reviewer, r.revision) for r in history] == [("bob", 1), ("alice", 2)]
    assert history[-1].fields["artistName"] == "Bob's artist"
    assert history[-1].fields["catalogNumber"] == "SL 42"

    # The other way on: "Save mine instead" saves over theirs, knowingly. Bob holds the
    # job's other record; it is freed, alice opens it and types, it is freed again, and the
    # page bob still has open on it saves first.
    other = record_of(bob)
    manager.release_lease(*other)
    alice.review.queue.value = other
    assert record_of(alice) == other, alice.review.message.value
    alice.review.fields["artistName"].value = "Mine after all"
    manager.release_lease(*other)
    bob.review.save_button.click()
    assert "Saved job" in bob.review.message.value
    alice.review.save_button.click()
    assert alice.review.conflict.layout.display == ""
    assert [r.reviewer for r in api.review_history(*other)] == ["bob"]
    alice.review.save_mine_button.click()
    assert "Saved job" in alice.review.message.value
    history = sorted(api.review_history(*other), key=lambda r: r.revision)
    assert [(r.reviewer, r.revision) for r in history] == [("bob", 1), ("alice", 2)]
    assert history[-1].fields["artistName"] == "Mine after all"


def test_a_save_on_a_record_a_colleague_holds_says_who_and_keeps_what_was_typed(
    live_server, server_tokens
):
    from scanbatch.workbench.review import clock

    api = Client(live_server.url, server_tokens["director"])
    job = crate(api, 2, "Held")
    alice = reviewing(live_server, server_tokens["director"], job)
    record = record_of(alice)
    alice.review.fields["artistName"].value = "Alice's artist"
    Client(live_server.url, server_tokens["manager"]).release_lease(*record)
    bob = reviewing(live_server, server_tokens["other"], job)
    if record_of(bob) != record:
        bob.review.queue.value = record
    assert record_of(bob) == record
    until = next(i.lease.until for i in api.review_items(job_id=job).items if i.lease)

    alice.review.save_button.click()
    message = html.unescape(alice.review.message.value)
    assert f"Not saved: bob is reviewing this record (until {clock(until)})" in message
    assert api.review_history(*record) == []
    assert (
        record_of(alice) == record and alice.review.fields["artistName"].value == "Alice's artist"
    )
    # Bob leaves it unsaved (picks the other record): alice's save goes through.
    (other,) = [(job, i) for i in range(2) if (job, i) != record]
    bob.review.queue.value = other
    assert record_of(bob) == other
    alice.review.save_button.click()
    assert "Saved job" in alice.review.message.value
    (saved,) = api.review_history(*record)
    assert (saved.reviewer, saved.fields["artistName"]) == ("alice", "Alice's artist")


def test_the_next_record_s_photos_are_fetched_ahead_without_leasing_it(live_server, server_tokens):
    from scanbatch.workbench.review import PREFETCH, THUMB_PX

    api = Client(live_server.url, server_tokens["director"])
    job = crate(api, PREFETCH + 2, "Ahead")
    alice = reviewing(live_server, server_tokens["director"], job)
    assert alice.join()
    review = alice.review
    order = [(i.job_id, i.item_index) for i in api.review_items(job_id=job, limit=100).items]
    ahead = {k[:2] for k in review._thumbs if k[0] == job and k[3] == THUMB_PX}
    assert ahead == set(order[: PREFETCH + 1])  # the one open and the next ones
    # Only their photos: the page holds one lease, the open record's.
    assert [i for i, h in leases(api, job).items() if h] == [record_of(alice)[1]]
    review.save_button.click()
    # The next record's thumbnails are in the page at once, not loaded after it is shown.
    assert record_of(alice) == order[1]
    images = [box.children[0] for box in review.thumbs.children]
    assert images and all(i.value[:3] == b"\xff\xd8\xff" and i.layout.display == "" for i in images)


def test_a_lease_that_ran_out_hands_the_record_on_and_the_late_save_is_a_conflict(tmp_path):
    """A short lease, really expiring: alice leaves her record open past its lease, `next`
    hands it to bob, he saves; alice's save then shows his review instead of replacing it."""
    import time

    from scanbatch.store import JobStore
    from scanbatch.testing.servers import ServerProcess, keys

    data = tmp_path / "data"
    store = JobStore.open(data / "scanbatch.duckdb")
    try:
        tokens = keys(store)
    finally:
        store.close()
    server = ServerProcess(data, SCANBATCH_REVIEW_LEASE_SECONDS="2").start()
    try:
        api = Client(server.url, tokens["director"])
        job = crate(api, 1, "Expiry")
        alice = reviewing(server, tokens["director"], job)
        record = record_of(alice)
        alice.review.fields["artistName"].value = "Alice, after lunch"
        time.sleep(2.5)
        assert leases(api, job) == {0: None}  # ran out: nobody holds it
        bob = reviewing(server, tokens["other"], job)
        assert record_of(bob) == record  # the one record, handed on
        bob.review.save_button.click()
        assert "Saved job" in bob.review.message.value
        alice.review.save_button.click()
        assert alice.review.conflict.layout.display == ""
        assert [r.reviewer for r in api.review_history(*record)] == ["bob"]
    finally:
        server.stop()
