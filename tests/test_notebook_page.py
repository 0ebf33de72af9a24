"""The executed notebook's HTML (GET /library/scan/batch/<jobId>/notebook) needs nothing from
another site: no require.js or MathJax from a CDN (broken on an offline station network, a
third-party script on an authenticated page), a Content-Security-Policy that forbids remote
(and any) scripts, and it still renders its tables and thumbnails in a real browser."""

import re
import shutil
from pathlib import Path

import pytest
import requests

from scanbatch.testing.imaging import image_bytes
from scanbatch.testing.servers import bearer
from tests.webutil import post_batch

CHROMIUM = Path("/usr/bin/chromium")
CDNS = ("cdnjs", "unpkg", "jsdelivr", "mathjax", "require.js", "googleapis")


@pytest.fixture(scope="module")
def notebook(live_server, server_tokens):
    """(url, response) of a finished job's notebook: two records, JPEG and HEIC photos."""
    token = server_tokens["director"]
    manifest = [
        {"imageCount": 2, "photoTypes": ["front", "back"], "context": {"artistName": "Can"}},
        {"imageCount": 1, "photoTypes": ["front"], "context": {"stickerText": "fail"}},
    ]
    files = [
        ("a.jpg", image_bytes("JPEG", size=(400, 300)), "image/jpeg"),
        ("b.heic", image_bytes("HEIF", size=(300, 400)), "image/heic"),
        ("c.png", image_bytes("PNG", size=(320, 320)), "image/png"),
    ]
    job_id = post_batch(live_server.url, token, manifest, files)
    live_server.wait_finished(job_id, token)
    url = f"{live_server.url}/library/scan/batch/{job_id}/notebook"
    page = requests.get(url, headers=bearer(token), timeout=60)
    assert page.status_code == 200, page.text[:300]
    return url, page


def test_the_html_loads_nothing_from_another_site(notebook):
    _, page = notebook
    html = page.text
    assert "data:image/jpeg;base64," in html  # the thumbnails travel inside the page
    assert re.findall(r"<script\b", html, re.IGNORECASE) == []
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", html, re.I)
    assert "@import" not in html
    lowered = html.lower()
    assert [cdn for cdn in CDNS if cdn in lowered] == []


def test_the_page_has_a_policy_that_forbids_scripts(notebook):
    _, page = notebook
    policy = page.headers["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["default-src"] == ["'none'"]
    assert "script-src" not in directives  # so default-src 'none' applies: no script at all
    sources = [s for values in directives.values() for s in values]
    assert not [s for s in sources if "http" in s or "*" in s or "." in s], policy
    assert directives["frame-ancestors"] == ["'none'"]


@pytest.mark.slow
def test_a_browser_renders_tables_and_thumbnails_offline(notebook, server_tokens, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: install it with apt-get install chromium")
    from playwright.sync_api import sync_playwright

    url, _ = notebook
    requested, violations, console = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            context = browser.new_context(
                extra_http_headers=bearer(server_tokens["director"]),
                viewport={"width": 1200, "height": 2400},
            )
            # Installed by the browser itself (not a script of the page), before the page loads.
            context.add_init_script(
                "window.__csp = [];"
                "document.addEventListener('securitypolicyviolation', e =>"
                " window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page = context.new_page()
            page.on("request", lambda r: requested.append(r.url))
            page.on("console", lambda m: console.append(m.text))
            page.goto(url, wait_until="networkidle")
            images = page.evaluate(
                "[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
            )
            tables = page.evaluate("document.querySelectorAll('table').length")
            cells = page.evaluate("document.querySelectorAll('td').length")
            violations = page.evaluate("window.__csp")
            page.screenshot(path=str(tmp_path / "notebook.png"))
        finally:
            browser.close()
    shutil.copy(tmp_path / "notebook.png", Path("/tmp") / "scanbatch-notebook-page.png")
    # Three photos, each a thumbnail that decoded; the fields and the summary as tables.
    assert len(images) >= 3 and all(done and w > 0 and h > 0 for done, w, h in images), images
    assert tables >= 2 and cells >= 6, (tables, cells)
    # Nothing left the machine, and the policy refused nothing the page needed.
    remote = [u for u in requested if not u.startswith(("http://127.0.0.1:", "data:"))]
    assert remote == [], remote
    assert violations == [], violations
    assert not [m for m in console if "Content Security Policy" in m or "violate" in m], console
