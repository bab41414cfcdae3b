"""The H5 recharge journey in a real browser (DESIGN.md section 9): Debian's chromium, headless,
driven by Playwright for Python, on a phone-sized viewport, against the app served on a local port in
sandbox mode (the fake WeChat mounted under /sandbox stands in for OAuth and WeChat Pay).

Open a rule's short link with a source tag -> log in on the sandbox OAuth page -> pick the rule ->
confirm on the sandbox pay page (it posts WeChat's signed notification back to the app) -> the page
shows the new balance and the rewards. Skipped only where /usr/bin/chromium is missing (.ci/run
installs it); ``playwright install`` is never needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mp_backend.extensions import db
from mp_backend.recharge.models import RechargeOrder
from tests.browser.serving import served_demo
from tests.conftest import assert_ledger_ok

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"
)


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[str, Any]]:
    """The app with the demo data, in sandbox mode, served on a local port."""
    with served_demo(database_url) as (origin, app):
        yield origin, app


def test_scan_login_pay_and_see_balance_and_rewards_on_a_phone(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    origin, app = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
            page.set_default_timeout(TIMEOUT_MS)
            # given a customer who scans the demo rule's QR code (a source tag on the link)
            page.goto(f"{origin}/r/demo100?src=test")
            # when she logs in through (sandbox) WeChat OAuth as a new member
            page.wait_for_url("**/sandbox/wechat/connect/**")
            page.fill("input[name=openid]", "browser-dora")
            page.click("button[type=submit]")
            # then she sees the rule with its rewards in plain words
            rule = page.locator(".rule")
            expect(rule).to_have_count(1)
            expect(rule).to_contain_text("充 100.00 元")
            expect(rule).to_contain_text("赠送 10.00 元")
            expect(page.locator("#current")).to_contain_text("当前余额 0.00 元")
            page.screenshot(path=tmp_path / "1-rule.png", full_page=True)
            # when she pays on the sandbox pay page
            rule.get_by_role("button").click()
            page.wait_for_url("**/sandbox/wechatpay/sandbox/pay**")
            expect(page.locator("body")).to_contain_text("¥100.00")
            page.screenshot(path=tmp_path / "2-pay.png", full_page=True)
            page.get_by_role("button", name="确认支付").click()
            # then the page shows the new balance and what she got
            expect(page.locator("#balance")).to_contain_text("110.00")
            expect(page.locator("#rewards")).to_contain_text("赠送 10.00 元")
            expect(page.locator("#rewards")).to_contain_text("赠送 100 积分")
            page.screenshot(path=tmp_path / "3-paid.png", full_page=True)
            # and "recharge again" keeps the source tag
            expect(page.locator("#again")).to_have_attribute("href", "/r/demo100?src=test")
        finally:
            browser.close()
    # and the order kept the source tag and was credited once
    with app.app_context():
        order = db.session.scalars(select(RechargeOrder)).one()
        assert (order.status, order.src, order.paid_via) == ("paid", "test", "notify")
        assert_ledger_ok()
