"""The payment code in the H5 member centre, in a real browser: shown as a QR code and as digits, both of
the code the API answered, and replaced by a new one shortly before it expires.

The QR code is decoded from the browser's own pixels with zxing-cpp (an independent decoder, not the
library that drew it). The page's timers run on Playwright's clock, so a minute passes at once.
``SHOTS_DIR=<dir>`` also keeps the screenshot there as ``paycode.png``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sqlalchemy import text

from mp_backend.extensions import db
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, PHONE, TIMEOUT_MS, needs_chromium
from tests.qr import decode_qr

pytestmark = needs_chromium


def spaced(code: str) -> str:
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def test_member_centre_shows_the_payment_code_as_qr_and_digits_and_rotates_it(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    origin, app = served
    shots = Path(os.environ.get("SHOTS_DIR") or tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
            page.set_default_timeout(TIMEOUT_MS)
            page.clock.install()
            # given demo Alice logged in to the member centre through (sandbox) WeChat OAuth
            page.goto(f"{origin}/static/member.html")
            page.wait_for_url("**/sandbox/wechat/connect/**")
            page.fill("input[name=openid]", "demo-alice")
            page.click("button[type=submit]")
            expect(page.locator("#available")).to_have_text("220.00")
            # when she opens her payment code
            with page.expect_response(lambda r: "/api/me/pay-code" in r.url) as answered:
                page.click("#show-paycode")
            code = answered.value.json()["code"]
            # then the page shows the API's code as digits and as a QR code that decodes to it
            qr = page.locator("#paycode-qr")
            expect(qr).to_be_visible()
            expect(page.locator("#paycode-digits")).to_have_text(spaced(code))
            assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
            assert decode_qr(qr.screenshot()) == [code]
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=shots / "paycode.png", full_page=True)
            # when the code is about to expire (50 of its 60 s), the page asks for a new one by itself
            with page.expect_response(lambda r: "/api/me/pay-code" in r.url) as rotated:
                page.clock.run_for(51_000)
            new_code = rotated.value.json()["code"]
            # then both the digits and the QR code are of the new code
            assert new_code != code
            expect(page.locator("#paycode-digits")).to_have_text(spaced(new_code))
            page.wait_for_function("code => document.getElementById('paycode-qr').dataset.code === code", arg=new_code)
            assert decode_qr(qr.screenshot()) == [new_code]
            # a page left open rotates a few times more (five in all), then stops and says so
            for _ in range(4):
                with page.expect_response(lambda r: "/api/me/pay-code" in r.url) as rotated:
                    page.clock.run_for(51_000)
                new_code = rotated.value.json()["code"]
                expect(page.locator("#paycode-digits")).to_have_text(spaced(new_code))
            page.clock.run_for(61_000)
            expect(page.locator("#paycode-hint")).to_have_text("付款码已过期，请点击刷新")
            expect(qr).to_be_hidden()
            expect(page.locator("#paycode-digits")).to_have_text("")
        finally:
            browser.close()
    # and the last code shown is the member's only one (each new code replaced the one before)
    with app.app_context():
        stored = db.session.execute(text("SELECT code_hash FROM pay_code")).scalars().all()
        assert stored == [hashlib.sha256(new_code.encode()).hexdigest()]
