"""The console in headless Chromium against a real `enfeed serve`: an issuer signs in, issues a
confirmed code with a symptom date, a phone uploads with it, the operator runs data-prep and
sees the keys on the status page and its charts; an issuer cannot open the operator's pages; a
revoked issuer is signed out; the console as static files, on another origin than the API,
signs an issuer in with their token and issues a code. Every page is photographed into
CONSOLE_SCREENSHOTS."""

import base64
import datetime
import os
import re
import urllib.request

from playwright.sync_api import expect

from conftest import ADMIN_TOKEN

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1200, "height": 900}
GENERIC_FAILURE = "Sign-in failed: this credential is not valid."


def today(days_ago=0):
    return (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days_ago)).date()


def phone_upload(server, code, keys=3, region="CH"):
    """What a phone sends: its keys of the last `keys` full days, with the code."""
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    day_start = now // 600 // 144 * 144
    teks = [
        {
            "key": base64.b64encode(os.urandom(16)).decode(),
            "rollingStartNumber": day_start - day * 144,
            "rollingPeriod": 144,
            "transmissionRisk": 4,
        }
        for day in range(1, keys + 1)
    ]
    body = {
        "temporaryExposureKeys": teks,
        "regions": [region],
        "verificationPayload": code,
        "padding": base64.b64encode(b"\0" * 64).decode(),
    }
    return server.call("POST", "/v1/publish", body)


class Watched:
    """A page whose console errors (a script failure, a CSP violation) fail the test."""

    def __init__(self, browser, viewport):
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def ready(self):
        expect(self.page.locator("body")).to_have_attribute("data-ready", "true")

    def shot(self, folder, name):
        self.page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    def close(self):
        self.context.close()
        assert not [e for e in self.errors if "401" not in e and "403" not in e], self.errors


def sign_in(watched, server, token, by_keyboard=False):
    page = watched.page
    page.goto(server.base + "/console/")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    watched.ready()
    if by_keyboard:
        page.keyboard.press("Tab")  # the skip link
        page.keyboard.press("Tab")
        expect(page.get_by_label("Token")).to_be_focused()
        page.keyboard.type(token)
        page.keyboard.press("Enter")
    else:
        page.get_by_label("Token").fill(token)
        page.get_by_role("button", name="Sign in").click()


def test_a_wrong_credential_gets_the_login_page_with_a_generic_message(server, browser, screenshots):
    watched = Watched(browser, DESKTOP)
    page = watched.page
    sign_in(watched, server, "not-a-token-of-this-region")
    expect(page.get_by_role("alert")).to_have_text(GENERIC_FAILURE)
    expect(page).to_have_url(re.compile(r"/console/login$"))
    watched.shot(screenshots, "login")
    # Nothing signed in: the pages send to the login page, the API answers 401.
    page.goto(server.base + "/console/status")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    assert server.call("GET", "/v1/admin/status")[0] == 401
    watched.close()


def test_console_answers_carry_a_strict_policy_and_the_cookie_is_locked_down(server, browser):
    watched = Watched(browser, DESKTOP)
    page = watched.page
    response = page.goto(server.base + "/console/login")
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.content()
    sign_in(watched, server, ADMIN_TOKEN)
    expect(page).to_have_url(re.compile(r"/console/status$"))
    watched.ready()
    [cookie] = watched.context.cookies()
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    # The script cannot read the session cookie.
    assert "enfeed_session" not in page.evaluate("document.cookie")
    # A state-changing request without the CSRF token is refused, even with the cookie.
    status = page.evaluate(
        """fetch('/v1/admin/run/dataprep', {method: 'POST'}).then(r => r.status)"""
    )
    assert status == 403
    watched.close()


def test_an_issuer_issues_a_code_a_phone_uses_it_and_the_operator_sees_the_keys(
    server, peer, browser, screenshots
):
    # The operator adds a code issuer on the console.
    operator = Watched(browser, DESKTOP)
    op = operator.page
    sign_in(operator, server, ADMIN_TOKEN)
    expect(op).to_have_url(re.compile(r"/console/status$"))
    op.get_by_role("link", name="Code issuers").click()
    operator.ready()
    op.get_by_label("Name of the new issuer").fill("Test centre 1")
    op.get_by_role("button", name="Add issuer").click()
    expect(op.locator("#token-value")).to_have_text(re.compile(r"^[0-9a-f]{32}$"))
    token = op.locator("#token-value").inner_text().strip()
    expect(op.locator("#issuers")).to_contain_text("Test centre 1")
    operator.shot(screenshots, "issuers")

    # The issuer signs in with the keyboard alone, on a phone-sized screen.
    issuer = Watched(browser, PHONE)
    page = issuer.page
    sign_in(issuer, server, token, by_keyboard=True)
    expect(page).to_have_url(re.compile(r"/console/issuer$"))
    issuer.ready()
    expect(page.locator("#who")).to_have_text("Test centre 1")

    # A symptom date in the future or older than 14 days is refused by the page...
    for bad in (today(-1), today(15)):
        page.get_by_label("Symptom onset date").fill(bad.isoformat())
        page.get_by_role("button", name="Issue code").click()
        expect(page.locator("#code-error")).to_be_visible()
        expect(page.locator("#issued")).to_be_hidden()
    # ...and by the API.
    for bad in (today(-1), today(15)):
        status, answer = server.call(
            "POST", "/v1/admin/codes", {"testType": "confirmed", "symptomDate": bad.isoformat()}, token
        )
        assert (status, answer["code"]) == (400, "bad_symptom_date")

    # A confirmed code with a symptom date, shown large with its expiry.
    page.get_by_label("Test type").select_option("confirmed")
    page.get_by_label("Symptom onset date").fill(today(3).isoformat())
    page.get_by_role("button", name="Issue code").focus()
    page.keyboard.press("Enter")
    code = page.locator("#code")
    expect(code).to_have_text(re.compile(r"^\d{10}$"))
    the_code = code.inner_text()
    expect(page.locator("#code-expiry")).to_contain_text("Valid until")
    expect(page.get_by_role("button", name="Copy code")).to_be_focused()
    rows = page.locator("#today tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("confirmed")
    expect(rows.first).to_contain_text(today(3).isoformat())
    expect(rows.first).to_contain_text("unused")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select')].filter(e => e.labels.length === 0).length"""
    )
    assert unlabelled == 0
    issuer.shot(screenshots, "issuer")

    # A phone uploads with it; the issuer sees the code used.
    accepted_before = server.metric("enfeed_uploads_total", outcome="accepted")
    status, answer = phone_upload(server, the_code)
    assert (status, answer["insertedExposures"]) == (200, 3), answer
    page.reload()
    issuer.ready()
    expect(page.locator("#today tbody tr").first).to_contain_text("used")

    # The issuer cannot open the operator's pages, nor call the operator's routes.
    for path in ("/console/status", "/console/peers", "/console/issuers"):
        response = page.goto(server.base + path)
        assert response.status == 403
        expect(page.get_by_role("heading", level=1)).to_have_text("This page is not for your role")
    issuer.shot(screenshots, "forbidden")
    for path in ("/v1/admin/status", "/v1/admin/peers", "/v1/admin/issuers", "/metrics"):
        assert server.call("GET", path, token=token)[0] == 403
    assert server.call("POST", "/v1/admin/run/dataprep", token=token)[0] == 403

    # The operator runs data-prep and sees the keys on the status page and the charts, with
    # the numbers of /metrics.
    op.get_by_role("link", name="Status").click()
    operator.ready()
    op.get_by_role("button", name="Run data-prep now").click()
    expect(op.locator("#run-status")).to_contain_text("Done")
    last_run = op.locator("#last-run tbody")
    expect(last_run).to_contain_text("v1/keys")
    public_row = op.locator("#last-run tbody tr", has_text=re.compile(r"^v1/keys"))
    expect(public_row.locator("td").nth(2)).to_have_text("3")
    counts = op.locator("#counts")
    expect(counts).to_contain_text("Keys stored, local")
    stored = server.call("GET", "/v1/admin/status", token=ADMIN_TOKEN)[1]["keysStored"]["local"]
    assert stored == 3
    accepted = server.metric("enfeed_uploads_total", outcome="accepted")
    assert accepted == accepted_before + 1
    published = server.metric("enfeed_keys_published_total", feed="v1/keys")
    assert published == 3
    expect(op.locator("#uploads-chart")).to_have_attribute("data-total", str(int(accepted)))
    expect(op.locator("#keys-chart")).to_have_attribute("data-total", str(int(published)))
    assert op.locator("#uploads-chart svg rect").count() >= 1
    assert op.locator("#keys-chart svg rect").count() >= 1
    expect(op.locator("#signing-keys tbody")).to_contain_text("CH")
    operator.shot(screenshots, "status")
    # The peer DE publishes keys of its own; the operator pulls them and sees the peer.
    peer_region, bucket = peer
    _, issued = peer_region.call("POST", "/v1/admin/codes", {}, ADMIN_TOKEN)
    assert phone_upload(peer_region, issued["code"], keys=2, region="DE")[0] == 200
    assert peer_region.call("POST", "/v1/admin/run/dataprep", token=ADMIN_TOKEN)[0] == 200
    assert bucket.mirror(peer_region) >= 1
    op.get_by_role("link", name="Peers").click()
    operator.ready()
    expect(op.get_by_role("heading", level=1)).to_have_text("Peers")
    op.get_by_role("button", name="Pull from peers now").click()
    expect(op.locator("#pull-status")).to_have_text("Done: 2 keys imported.")
    de = op.locator("#peers tbody tr", has_text="DE")
    expect(de.locator("td").nth(3)).to_have_text("2")
    assert server.metric("enfeed_peer_keys_imported_total", peer="DE") == 2
    expect(de.locator("td").nth(1)).not_to_have_text("never")
    operator.shot(screenshots, "peers")
    status = server.call("GET", "/v1/admin/status", token=ADMIN_TOKEN)[1]
    assert status["keysStored"]["remote"] == 2

    # The peer's bucket then lists a file that is not there: the pull fails, the peers page
    # counts the failure, and the status page shows the warning that was logged.
    (bucket.folder / "index.txt").write_text("v1/keys/999\n")
    op.get_by_role("button", name="Pull from peers now").click()
    expect(op.locator("#pull-status")).to_have_text("Done: 0 keys imported.")
    expect(de.locator("td").nth(5)).to_have_text("1")
    assert server.metric("enfeed_peer_failures_total", peer="DE") == 1
    op.get_by_role("link", name="Status").click()
    operator.ready()
    expect(op.locator("#errors")).to_contain_text("pull from peer stopped")
    expect(op.locator("#errors")).to_contain_text("WARN")

    # The operator revokes the issuer: their session ends, their token is refused.
    op.get_by_role("link", name="Code issuers").click()
    operator.ready()
    op.get_by_role("button", name="Revoke Test centre 1").click()
    expect(op.locator("#issuers tbody")).to_contain_text("revoked")
    page.goto(server.base + "/console/issuer")
    expect(page).to_have_url(re.compile(r"/console/login\?ended$"))
    expect(page.locator("#login-message")).to_contain_text("Your session has ended")
    assert server.call("GET", "/v1/admin/codes", token=token)[0] == 401
    sign_in(issuer, server, token)
    expect(page.get_by_role("alert")).to_have_text(GENERIC_FAILURE)
    issuer.close()
    operator.close()


def test_an_issuer_whose_page_is_open_is_signed_out_when_revoked(server, browser):
    token = server.call("POST", "/v1/admin/issuers", {"name": "Night shift"}, ADMIN_TOKEN)[1]["token"]
    issuer = Watched(browser, PHONE)
    page = issuer.page
    sign_in(issuer, server, token)
    expect(page).to_have_url(re.compile(r"/console/issuer$"))
    issuer.ready()
    assert server.call("POST", "/v1/admin/issuers/Night%20shift/revoke", token=ADMIN_TOKEN)[0] == 200
    # The next thing the open page does sends them to the login page.
    page.get_by_role("button", name="Issue code").click()
    expect(page).to_have_url(re.compile(r"/console/login\?ended$"))
    issuer.close()


def test_the_static_console_on_another_origin_signs_an_issuer_in_and_issues_a_code(
    server, static_console, browser, screenshots
):
    token = server.call("POST", "/v1/admin/issuers", {"name": "Mobile team"}, ADMIN_TOKEN)[1]["token"]
    watched = Watched(browser, PHONE)
    page = watched.page
    page.goto(static_console.base + "/issuer.html")
    # Not signed in: the issuer's page sends to the sign-in page.
    expect(page).to_have_url(re.compile(r"/login\.html$"))
    watched.ready()
    policy = page.locator('meta[http-equiv="Content-Security-Policy"]').get_attribute("content")
    assert f"connect-src {server.base};" in policy and "script-src 'self';" in policy
    assert page.locator('meta[name="enfeed-api"]').get_attribute("content") == server.base

    # A wrong token and the operator's are refused, the wrong one with the generic message.
    for wrong, message in (("not-a-token-of-this-region", GENERIC_FAILURE),
                           (ADMIN_TOKEN, "These pages are for code issuers.")):
        page.get_by_label("Token").fill(wrong)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text(message)
    assert page.evaluate("sessionStorage.length") == 0

    # The issuer signs in; the token stays in the tab, no cookie is set anywhere.
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/issuer\.html$"))
    watched.ready()
    expect(page.locator("#who")).to_have_text("Mobile team")
    assert page.evaluate("sessionStorage.getItem('enfeed-token')") == token
    assert watched.context.cookies() == []

    # A confirmed code with a symptom date, through the API on the other origin.
    page.get_by_label("Test type").select_option("confirmed")
    page.get_by_label("Symptom onset date").fill(today(2).isoformat())
    page.get_by_role("button", name="Issue code").click()
    code = page.locator("#code")
    expect(code).to_have_text(re.compile(r"^\d{10}$"))
    the_code = code.inner_text()
    rows = page.locator("#today tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("unused")
    watched.shot(screenshots, "static-issuer")
    status, answer = phone_upload(server, the_code, keys=2)
    assert (status, answer["insertedExposures"]) == (200, 2), answer
    page.reload()
    watched.ready()
    expect(rows.first).to_contain_text("used")

    # The page's policy lets it talk to the API alone.
    outcome = page.evaluate(
        "fetch('http://127.0.0.1:9/elsewhere').then(() => 'sent', () => 'blocked')"
    )
    assert outcome == "blocked"
    violations = [e for e in watched.errors if "Content Security Policy" in e]
    assert violations, watched.errors
    watched.errors = [e for e in watched.errors if e not in violations]

    # Signing out forgets the token; a revoked token sends the open page back to sign in.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login\.html$"))
    assert page.evaluate("sessionStorage.length") == 0
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/issuer\.html$"))
    watched.ready()
    assert server.call("POST", "/v1/admin/issuers/Mobile%20team/revoke", token=ADMIN_TOKEN)[0] == 200
    page.get_by_role("button", name="Issue code").click()
    expect(page).to_have_url(re.compile(r"/login\.html\?ended$"))
    expect(page.locator("#login-message")).to_contain_text("Your session has ended")
    assert page.evaluate("sessionStorage.length") == 0
    watched.close()


def test_the_api_answers_cors_to_the_static_consoles_origin_alone(server, static_console):
    def preflight(origin):
        request = urllib.request.Request(server.base + "/v1/issuer/codes", method="OPTIONS", headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        })
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.headers

    allowed = preflight(static_console.base)
    assert allowed["access-control-allow-origin"] == static_console.base
    assert "authorization" in allowed["access-control-allow-headers"].lower()
    assert allowed["access-control-allow-credentials"] is None
    assert preflight("https://evil.example")["access-control-allow-origin"] is None


def test_the_login_page_fits_a_phone(server, browser):
    watched = Watched(browser, PHONE)
    watched.page.goto(server.base + "/console/login")
    watched.ready()
    assert watched.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    watched.close()
