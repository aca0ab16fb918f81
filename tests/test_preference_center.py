"""The reference preference center (GET /preference-center/), end to end in headless
Chromium (Debian's ``chromium``, driven by Playwright): grant, withdraw, the GPC notice, a
guardian managing a child, the child's own view, history, export, erasure, a phone-sized
viewport, the keyboard, an embedding host page; axe-core finds no serious or critical
violation. Screenshots are kept under ``.artifacts/preference-center/`` (gitignored).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from consent.api.app import create_app
from consent.settings import Settings
from consentctl.embedded import free_port
from consentctl.servers import http_server
from tests.conftest import ADMIN_KEY, JWT_SECRET
from tests.gpp import axe_source

pw = pytest.importorskip("playwright.async_api")

CHROMIUM = os.environ.get("CONSENT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "preference-center"
PHONE = {"width": 390, "height": 844}
ADMIN = {"X-API-Key": ADMIN_KEY}
WRITTEN: list[Path] = []


def token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, JWT_SECRET, "HS256")


def years_ago(n: int) -> str:
    today = datetime.now(UTC).date()
    return (today.replace(year=today.year - n) - timedelta(days=30)).isoformat()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def host_port() -> int:
    return free_port()


@pytest.fixture
def api_url(settings: Settings, host_port: int) -> Iterator[str]:
    """The API served by uvicorn in its own thread; the host page's origin may embed it."""
    port = free_port()
    app = create_app(
        settings.model_copy(
            update={
                "scheduler_enabled": False,
                "preference_center_frame_ancestors": [f"http://localhost:{host_port}"],
            }
        )
    )
    server = http_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    async with pw.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


async def open_center(
    browser: Any, api_url: str, subject_token: str, *, phone: bool = False, **handoff: Any
) -> Any:
    """A page with the token handed over through sessionStorage (the same-origin handoff)."""
    context = await browser.new_context(
        viewport=PHONE if phone else {"width": 1100, "height": 900},
        accept_downloads=True,
        extra_http_headers=handoff.pop("headers", {}),
    )
    page = await context.new_page()
    page.csp_violations = []  # type: ignore[attr-defined]
    page.on(
        "console",
        lambda m: (
            page.csp_violations.append(m.text)  # type: ignore[attr-defined]
            if "Content Security Policy" in m.text
            else None
        ),
    )
    payload = json.dumps({"token": subject_token, **handoff})
    await context.add_init_script(
        f"sessionStorage.setItem('consent-pc:token', {json.dumps(payload)});"
    )
    await page.goto(f"{api_url}/preference-center/")
    await page.wait_for_selector("body[data-ready='true']", timeout=15000)
    return page


async def shot(page: Any, name: str) -> None:
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    WRITTEN.append(path)


async def assert_accessible(page: Any) -> None:
    # Runtime evaluation is not subject to the page's CSP, so axe needs no inline script.
    await page.evaluate(axe_source())
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target)}))"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, bad
    assert not page.csp_violations, page.csp_violations


async def until(page: Any, expression: str, timeout: float = 15.0) -> None:
    """Poll an expression (``wait_for_function`` compiles its predicate with eval, which
    the page's CSP forbids; ``evaluate`` goes through the DevTools protocol)."""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {expression}")
        await asyncio.sleep(0.05)


def api(api_url: str, method: str, path: str, **kw: Any) -> httpx.Response:
    r = httpx.request(method, f"{api_url}{path}", timeout=10, **kw)
    assert r.status_code < 300, r.text
    return r


async def test_grant_withdraw_history_export_on_a_phone_with_the_keyboard(
    browser, api_url, artifacts
):
    api(api_url, "PUT", "/v1/subjects/pat", json={"jurisdiction": "US-CA"}, headers=ADMIN)
    page = await open_center(browser, api_url, token("pat"), phone=True)
    legends = await page.locator("fieldset legend").all_inner_texts()
    assert legends == ["Marketing", "Sharing and sale", "Analytics", "Personalisation", "Cookies"]
    assert not await page.locator("#picker").is_visible()  # nobody else to manage
    sms = page.locator("#p-marketing_sms")
    assert not await sms.is_checked()  # SMS marketing is opt-in in the US (TCPA)
    assert "Default where you live" in await page.locator("#p-marketing_sms-reason").inner_text()

    # grant with the keyboard only: Tab to the switch, Space to turn it on
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "p-marketing_sms":
            break
    else:
        raise AssertionError("the SMS switch cannot be reached with Tab")
    await page.keyboard.press("Space")
    await page.wait_for_selector("#status:has-text('Saved')")
    assert await page.locator("#p-marketing_sms").is_checked()
    assert await page.evaluate("document.activeElement.id") == "p-marketing_sms"  # focus kept
    assert "You turned this on" in await page.locator("#p-marketing_sms-reason").inner_text()
    prefs = api(api_url, "GET", "/v1/subjects/pat/preferences", headers=ADMIN).json()
    assert prefs["purposes"]["marketing_sms"]["status"] == "granted"
    assert prefs["purposes"]["marketing_sms"]["source"] == "web"

    # withdraw: the same control, one action, exactly as easy
    await page.keyboard.press("Space")
    await until(
        page,
        "!document.getElementById('p-marketing_sms').checked && "
        "!document.getElementById('p-marketing_sms').disabled",
    )
    prefs = api(api_url, "GET", "/v1/subjects/pat/preferences", headers=ADMIN).json()
    assert prefs["purposes"]["marketing_sms"]["status"] == "denied"
    # and with a tap on a phone
    await page.locator("#p-analytics").click()
    await pw.expect(page.locator("#p-analytics-reason")).to_contain_text("You turned this off")
    assert not await page.locator("#p-analytics").is_checked()

    history = page.locator("#history-list li")
    await until(page, "document.querySelectorAll('#history-list li').length >= 4")
    newest = await history.first.inner_text()
    assert "Choice changed" in newest and "analytics: not chosen → off" in newest

    # the page fits a phone: nothing wider than the viewport
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width

    async with page.expect_download() as download_info:
        await page.locator("#export").click()
    download = await download_info.value
    assert download.suggested_filename == "consent-export-pat.json"
    exported = json.loads(Path(await download.path()).read_text())
    assert exported["subject"]["subject_id"] == "pat"
    assert len(exported["history"]) == 4
    await shot(page, "phone-grant-withdraw")
    await assert_accessible(page)
    await page.context.close()


async def test_gpc_notice_when_the_browser_sends_the_signal(browser, api_url, artifacts):
    api(api_url, "PUT", "/v1/subjects/gia", json={"jurisdiction": "US-CA"}, headers=ADMIN)
    page = await open_center(browser, api_url, token("gia"), headers={"Sec-GPC": "1"})
    notice = page.locator("#gpc-notice")
    assert await notice.is_visible()
    assert "Global Privacy Control honored" in await notice.inner_text()
    assert "not sell or share" in await notice.inner_text()
    for key in ("sale", "share"):
        assert not await page.locator(f"#p-{key}").is_checked()
        reason = await page.locator(f"#p-{key}-reason").inner_text()
        assert "Global Privacy Control" in reason
    prefs = api(api_url, "GET", "/v1/subjects/gia/preferences", headers=ADMIN).json()
    assert prefs["purposes"]["sale"]["reason"] == "gpc_opt_out"
    await shot(page, "gpc-notice")
    await assert_accessible(page)
    await page.context.close()

    # without the signal there is no notice
    api(api_url, "PUT", "/v1/subjects/nog", json={"jurisdiction": "US-CA"}, headers=ADMIN)
    page = await open_center(browser, api_url, token("nog"))
    assert not await page.locator("#gpc-notice").is_visible()
    await page.context.close()


async def test_guardian_manages_a_child_and_the_child_cannot_grant(browser, api_url, artifacts):
    api(
        api_url,
        "PUT",
        "/v1/subjects/kid",
        json={"jurisdiction": "US-CA", "birth_date": years_ago(9)},
        headers=ADMIN,
    )
    verified = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    api(
        api_url,
        "POST",
        "/v1/subjects/kid/guardians",
        json={
            "guardian_id": "mum",
            "verification": {"method": "signed_form", "reference": "c-1", "verified_at": verified},
        },
        headers=ADMIN,
    )
    page = await open_center(browser, api_url, token("mum"), subjects=["kid"])
    await page.locator("#subject-select").select_option("kid")
    await page.wait_for_selector("#minor-notice:not([hidden])")
    assert "managing a child" in await page.locator("#minor-notice").inner_text()
    for key in ("sale", "share"):  # a child's data is never sold or shared
        assert await page.locator(f"#p-{key}").is_disabled()
        assert "never sold" in await page.locator(f"#p-{key}-reason").inner_text()
    await page.locator("#p-cookies_functional").click()
    await page.wait_for_selector("#status:has-text('Saved')")
    prefs = api(api_url, "GET", "/v1/subjects/kid/preferences", headers=ADMIN).json()
    assert prefs["purposes"]["cookies_functional"]["allowed"] is True
    assert prefs["purposes"]["cookies_functional"]["source"] == "guardian"
    reason = page.locator("#p-cookies_functional-reason")
    assert "parent or guardian turned this on" in await reason.inner_text()
    await shot(page, "guardian-managing-child")
    await assert_accessible(page)
    await page.context.close()

    # the child's own view: it can turn things off, never on
    page = await open_center(browser, api_url, token("kid"), phone=True)
    assert "only your parent or guardian" in (await page.locator("#minor-notice").inner_text())
    assert await page.locator("#p-marketing_email").is_disabled()
    assert (
        "Only a parent or guardian" in await page.locator("#p-marketing_email-reason").inner_text()
    )
    functional = page.locator("#p-cookies_functional")
    assert await functional.is_checked() and await functional.is_enabled()
    await functional.click()  # withdrawing is allowed
    await page.wait_for_selector("#status:has-text('Saved')")
    prefs = api(api_url, "GET", "/v1/subjects/kid/preferences", headers=ADMIN).json()
    assert prefs["purposes"]["cookies_functional"]["status"] == "denied"
    assert await page.locator("#p-cookies_functional").is_disabled()  # and cannot come back
    await shot(page, "child-own-view")
    await assert_accessible(page)
    await page.context.close()


async def test_erasure_with_confirmation_and_due_date(browser, api_url, artifacts):
    api(api_url, "PUT", "/v1/subjects/eve", json={"jurisdiction": "DE"}, headers=ADMIN)
    page = await open_center(browser, api_url, token("eve"))
    await page.locator("#erase").click()
    dialog = page.locator("#erase-dialog")
    assert await dialog.is_visible()
    await shot(page, "erasure-confirmation")
    await page.keyboard.press("Escape")  # cancelling changes nothing
    assert not await dialog.is_visible()
    r = httpx.get(f"{api_url}/v1/subjects/eve/erasure", headers=ADMIN)
    assert r.status_code == 404

    await page.locator("#erase").click()
    await page.locator("#erase-confirm").click()
    await page.wait_for_selector("#status:has-text('Deletion requested')")
    erasure = api(api_url, "GET", "/v1/subjects/eve/erasure", headers=ADMIN).json()
    due = datetime.fromisoformat(erasure["due_at"].replace("Z", "+00:00"))
    assert due > datetime.now(UTC) + timedelta(days=14)
    assert "Due by" in await page.locator("#erasure-status").inner_text()
    assert await page.locator("#p-analytics").is_disabled()  # erased: nothing to change
    await shot(page, "erasure-requested")
    await assert_accessible(page)
    await page.context.close()


HOST_PAGE = """<!doctype html><html lang="en"><head><title>Host</title></head><body>
<main><h1>Example shop</h1><div id="privacy"></div></main>
<script>
  window.gtagCalls = [];
  window.gtag = function () { window.gtagCalls.push(Array.from(arguments)); };
</script>
<script src="{api}/preference-center/embed.js"></script>
<script>
  window.signals = [];
  ConsentPreferenceCenter.mount(document.getElementById("privacy"), {
    getToken: async () => "{token}",
    gpp: true,
    onSignals: (s) => window.signals.push(s),
  });
</script></body></html>"""


@contextmanager
def host_site(port: int, body: str) -> Iterator[None]:
    """The embedding site: another origin (``localhost``, another port) on loopback."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


async def test_embedded_in_a_host_page_by_postmessage(browser, api_url, host_port, artifacts):
    api(api_url, "PUT", "/v1/subjects/hal", json={"jurisdiction": "US-CA"}, headers=ADMIN)
    context = await browser.new_context(viewport={"width": 1000, "height": 1200})
    page = await context.new_page()

    body = HOST_PAGE.replace("{api}", api_url).replace("{token}", token("hal"))
    with host_site(host_port, body):
        await page.goto(f"http://localhost:{host_port}/account/privacy")
        await check_embedded(page)
    await context.close()


async def check_embedded(page: Any) -> None:
    await until(page, "window.signals.length >= 1")
    frame = page.frame_locator("iframe")
    await frame.locator("#p-share").click()  # opt out of sharing inside the frame
    await until(page, "window.signals.length >= 2")
    calls = await page.evaluate("window.gtagCalls")
    assert calls[0][:2] == ["consent", "update"]
    assert calls[-1][2]["ad_user_data"] == "denied"  # sharing off → no ad user data
    assert calls[0][2]["ad_user_data"] == "granted"
    ping = await page.evaluate(
        "new Promise(resolve => window.__gpp('ping', (data, ok) => resolve(data)))"
    )
    assert ping["gppString"].startswith("DBABrw~") and ping["sectionList"] == [7, 8]
    assert ping["gppString"] == (await page.evaluate("window.signals"))[-1]["gpp"]
    # the token never appears in a URL
    assert "eyJ" not in "".join(f.url for f in page.frames)
    await shot(page, "embedded-in-host")


OPENER_PAGE = """<!doctype html><html lang="en"><head><title>Host</title></head><body>
<main><button id="open">Privacy choices</button></main>
<script>
  window.addEventListener("message", (e) => {
    if (e.origin !== "{api}" || !e.data || e.data.type !== "consent-pc:ready") return;
    e.source.postMessage({type: "consent-pc:token", token: "{token}"}, "{api}");
  });
  document.getElementById("open").addEventListener("click",
    () => window.open("{api}/preference-center/", "privacy"));
</script></body></html>"""


async def test_opened_from_another_site_with_window_open(browser, api_url, host_port, artifacts):
    api(api_url, "PUT", "/v1/subjects/oli", json={"jurisdiction": "FR"}, headers=ADMIN)
    context = await browser.new_context()
    page = await context.new_page()
    body = OPENER_PAGE.replace("{api}", api_url).replace("{token}", token("oli"))
    with host_site(host_port, body):
        await page.goto(f"http://localhost:{host_port}/")
        async with context.expect_page() as popup_info:
            await page.locator("#open").click()
        popup = await popup_info.value
        await popup.wait_for_selector("body[data-ready='true']", timeout=15000)
        assert popup.url == f"{api_url}/preference-center/"
        assert not await popup.locator("#p-analytics").is_checked()  # opt-in in the EU
    await context.close()


async def test_headers_config_and_dev_helper(settings: Settings):
    app = create_app(
        settings.model_copy(update={"preference_center_frame_ancestors": ["https://shop.example"]})
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            r = await c.get("/preference-center/")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert "frame-ancestors 'self' https://shop.example" in csp
            assert '<script src="app.js" defer></script>' in r.text
            assert "<script>" not in r.text and "style=" not in r.text  # nothing inline
            assert (await c.get("/preference-center")).status_code == 308
            config = (await c.get("/preference-center/config.json")).json()
            assert config == {"allowed_origins": ["https://shop.example"], "dev": False}
            for name in ("app.js", "embed.js", "style.css", "strings.en.json"):
                assert (await c.get(f"/preference-center/{name}")).status_code == 200
            # the dev helper exists only under consentctl dev
            assert (await c.get("/preference-center/dev.html")).status_code == 404
            r = await c.post("/preference-center/dev/token", json={"subject_id": "u"})
            assert r.status_code == 404
    app = create_app(settings.model_copy(update={"preference_center_dev": True}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            assert (await c.get("/preference-center/dev.html")).status_code == 200
            minted = (await c.post("/preference-center/dev/token", json={"subject_id": "u"})).json()
            r = await c.get(
                "/v1/subjects/u/preferences", headers={"Authorization": f"Bearer {minted['token']}"}
            )
            assert r.status_code == 200


async def test_dev_sign_in_helper_opens_the_center(browser, settings: Settings, artifacts):
    """What `consentctl dev` prints: the sign-in helper hands a token over and opens it."""
    port = free_port()
    app = create_app(
        settings.model_copy(update={"scheduler_enabled": False, "preference_center_dev": True})
    )
    server = http_server(app, "127.0.0.1", port)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{port}/preference-center/dev.html")
        await page.locator("#subject").fill("dev-user")
        await page.get_by_role("button", name="Open the preference center").click()
        await page.wait_for_selector("body[data-ready='true']", timeout=15000)
        assert page.url.endswith("/preference-center/")
        await shot(page, "dev-sign-in-result")
        await context.close()
    finally:
        server.should_exit = True
        thread.join(10)
