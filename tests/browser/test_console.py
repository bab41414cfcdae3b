"""The merchant console at /admin/ in a real browser (DESIGN.md section 9, issue #15): Debian's chromium,
headless, driven by Playwright for Python, at a laptop (1366x768) and a tablet (768x1024) size, against
the app with the demo data served on a local port.

Every page is screenshotted into tests/browser/screenshots/ (git-ignored) so a person can look at them.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mp_backend.extensions import db
from mp_backend.ledger.models import LedgerEntry
from mp_backend.members.models import Member
from mp_backend.org.models import AuditLog, Staff
from mp_backend.recharge import offline
from mp_backend.recharge.models import RechargeRule
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS
from tests.browser.serving import served_demo
from tests.conftest import assert_ledger_ok
from tests.ops.conftest import run_jobs

LAPTOP = {"width": 1366, "height": 768}
TABLET = {"width": 768, "height": 1024}
SHOTS = Path(__file__).parent / "screenshots"
PASSWORD = "demo-password"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"
)


class Site:
    """The served app, its origin, and what the fixture made (member ids, a token per staff)."""

    def __init__(self, origin: str, app: Any) -> None:
        self.origin = origin
        self.app = app
        self.ids: dict[str, int] = {}

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.origin + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw

    def token(self, username: str) -> str:
        status, body = self.call("POST", "/admin/api/auth/login", {"username": username, "password": PASSWORD})
        assert status == 200, body
        return str(body["token"])


def _pay_a_rule(origin: str, openid: str, rule_id: int, src: str) -> None:
    """A member recharges under a rule through the sandbox: log in, order, confirm on the pay page."""
    site = Site(origin, None)
    status, login = site.call("POST", "/api/auth/wxa-login", {"code": f"sandbox-{openid}"})
    assert status == 200, login
    status, order = site.call("POST", "/api/recharges", {"rule_id": rule_id, "src": src}, token=login["token"])
    assert status == 201, order
    prepay_id = order["pay_params"]["package"].split("prepay_id=", 1)[1]
    form = urllib.request.Request(
        f"{origin}/sandbox/wechatpay/sandbox/pay",
        data=f"prepay_id={prepay_id}".encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(form, timeout=10) as response:
        assert "已通知商户" in response.read().decode()


@pytest.fixture
def site(database_url: str) -> Iterator[Site]:
    """The demo merchant, plus records in both stores: 22 counter recharges at sh01 (three pages of the
    ledger), one at sh02 (a clerk of sh01 must never see it), and two paid WeChat recharges with source
    tags (rule statistics and the by-source chart)."""
    ids: dict[str, int] = {}

    def counter_recharges() -> None:
        admin_id = db.session.scalars(select(Staff.id).where(Staff.username == "admin")).one()
        ids.update({f"rule_{r.code}": r.id for r in db.session.scalars(select(RechargeRule))})
        ids.update({m.name.split()[0].lower(): m.id for m in db.session.scalars(select(Member))})
        for n in range(22):
            offline.recharge_offline(
                admin_id, member={"id": ids["bob"]}, method="cash", receipt_no=f"S1-{n:03d}",
                store_code="sh01", rule_id=ids["rule_demo100"],
            )  # fmt: skip
        offline.recharge_offline(
            admin_id, member={"id": ids["carol"]}, method="card_terminal", receipt_no="S2-SECRET",
            store_code="sh02", rule_id=ids["rule_demo500"], note="sh02-only",
        )  # fmt: skip

    with served_demo(database_url, counter_recharges) as (origin, app):
        served = Site(origin, app)
        served.ids = ids
        _pay_a_rule(origin, "demo-alice", ids["rule_demo200"], "poster")
        _pay_a_rule(origin, "demo-carol", ids["rule_demo100"], "counter")
        yield served
        with app.app_context():
            run_jobs(app)  # on Redis: the balance notices and batches this test queued, not left to the next


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--lang=zh-CN"], headless=True
        )
        try:
            yield instance
        finally:
            instance.close()


def open_console(browser: Any, site: Site, username: str, viewport: dict = LAPTOP) -> Any:
    from playwright.sync_api import expect

    page = browser.new_page(viewport=viewport, locale="zh-CN", accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{site.origin}/admin/")
    expect(page.locator("#login-form")).to_be_visible()
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    ready(page, "overview")
    return page


def ready(page: Any, name: str) -> None:
    page.wait_for_selector(f'#view[data-ready="1"][data-page="{name}"]')


def visit(page: Any, hash_path: str) -> None:
    page.evaluate("h => { location.hash = h; }", "#/" + hash_path)
    ready(page, hash_path.split("/")[0].split("?")[0])


def pick_store(page: Any, within: str, name: str, code: str) -> None:
    """A store field is a select once /admin/api/stores lists the stores, a code input before."""
    if page.locator(f"{within} select[name={name}]").count():
        page.select_option(f"{within} select[name={name}]", code)
    else:
        page.fill(f"{within} input[name={name}]", code)


def submit_dialog(page: Any, name: str) -> None:
    """Confirm the open dialog and wait until it has closed and the page shows the result (until then
    the page still answers "ready" with what it showed before)."""
    page.click("#dialog-ok")
    page.wait_for_selector("#dialog:not([open])", state="attached")
    ready(page, name)


def confirm(page: Any, reason: str, screenshot: str) -> None:
    """Give the reason in the open dialog, keep a picture of the confirmation, confirm, wait for the page."""
    page.fill("#dialog input[name=reason]", reason)
    shot(page, screenshot)
    submit_dialog(page, "members")


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


@pytest.mark.parametrize("viewport", [LAPTOP, TABLET], ids=["laptop", "tablet"])
def test_hq_admin_logs_in_and_every_page_renders(site, browser, viewport):
    from playwright.sync_api import expect

    size = "laptop" if viewport is LAPTOP else "tablet"
    page = browser.new_page(viewport=viewport, locale="zh-CN")
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site.origin}/admin/")
    # given a wrong password: refused on the login form, nothing stored
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong-password")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("账号或密码错误")
    assert page.evaluate("sessionStorage.getItem('console_token')") is None
    shot(page, f"login-{size}")
    # when hq_admin logs in
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    ready(page, "overview")
    expect(page.locator("#who")).to_contain_text("admin（总部管理员")
    # then the overview draws the rule performance chart from the paid orders
    page.wait_for_selector('#chart-rules[data-rendered="1"]')
    page.wait_for_selector('#chart-source[data-rendered="1"]')
    expect(page.locator("#view")).to_contain_text("充200送30")
    shot(page, f"overview-{size}")
    # and every other page renders (pages over endpoints not merged yet say so instead of failing)
    for hash_path, text in (
        ("records/ledger", "资金流水"),
        ("records/orders", "充值订单"),
        ("records/payments", "余额支付"),
        ("members", "会员"),
        (f"members/{site.ids['alice']}", "Alice"),
        ("rules", "充100送10"),
        ("coupons", "满50减10"),
        ("card-types", "金卡"),
        ("org", "门店"),
        ("audit", "审计日志"),
        ("ops/anomalies", "未能发放的赠券"),
        ("ops/notices", "通知记录"),
        ("ops/batches", "上传并充值"),
        ("exports", "导出 Excel"),
    ):
        visit(page, hash_path)
        expect(page.locator("#view")).to_contain_text(text)
        shot(page, hash_path.replace("/", "-").replace(str(site.ids["alice"]), "detail") + f"-{size}")
    if viewport is TABLET:
        # the menu folds away on a tablet and opens from the top bar
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
        page.click("#menu-toggle")
        expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)
        page.wait_for_timeout(300)  # the slide-in transition
        shot(page, f"menu-{size}")
        page.click("#nav a[data-page=records]")
        ready(page, "records")
    # a dialog at this size: the offline recharge form fits the screen
    visit(page, f"members/{site.ids['bob']}")
    page.click("[data-act=recharge]")
    page.select_option("#dialog select[name=rule_id]", str(site.ids["rule_demo100"]))
    pick_store(page, "#dialog", "store_code", "sh01")
    expect(page.locator("#rc-summary")).to_contain_text("收款 100.00 元")
    shot(page, f"dialog-recharge-{size}")
    page.click("#dialog-cancel")
    assert errors == []


def test_a_forged_or_expired_token_goes_back_to_login(site, browser):
    from playwright.sync_api import expect

    page = open_console(browser, site, "admin")
    # given a token that the server no longer accepts
    page.evaluate("sessionStorage.setItem('console_token', 'forged.token.value')")
    # when the console next calls the API
    page.reload()
    # then it is back on the login form, with no token kept
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#shell")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('console_token')") is None
    # and logging out forgets the token too
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    ready(page, "overview")
    page.click("#logout")
    expect(page.locator("#login-form")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('console_token')") is None


def test_overview_cards_show_the_fund_totals(site, browser):
    from playwright.sync_api import expect

    _, overview = site.call("GET", "/admin/api/overview", token=site.token("admin"))
    page = open_console(browser, site, "admin")
    cards = page.locator("#ov-cards")
    expect(cards).to_contain_text("储值余额合计")
    total = overview["balance"]["total_fen"]
    expect(cards).to_contain_text(f"{total // 100:,}.{total % 100:02d}")
    page.wait_for_selector('#chart-daily[data-rendered="1"]')
    page.click("#ov-days button[data-days='90']")
    ready(page, "overview")
    page.wait_for_selector('#chart-daily[data-rendered="1"]')
    assert "days=90" in page.url
    shot(page, "overview-90-days-laptop")


def test_records_filter_page_and_open_a_row(site, browser):
    from playwright.sync_api import expect

    page = open_console(browser, site, "admin")
    visit(page, "records/ledger")
    # given 22 counter recharges (principal and bonus rows) at sh01 and the demo and WeChat credits:
    # the ledger pages by 20
    pager = page.locator(".pager")
    expect(pager).to_contain_text("第 1 / ")
    # when filtering by member (card number or phone is what staff type; the id link works too) and store
    pick_store(page, "#rec-filter", "store", "sh02")
    page.click("#rec-filter button[type=submit]")
    ready(page, "records")
    # then only sh02's two rows (principal and bonus of one counter recharge) are listed
    rows = page.locator("#rec-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#rec-table")).to_contain_text("上海静安寺店")
    assert "store=sh02" in page.url
    shot(page, "records-filtered-laptop")
    # and a bad range is refused before asking the server
    visit(page, "records/ledger?from=2024-05-02&to=2024-05-01")
    expect(page.locator("#rec-table")).to_contain_text("开始日期不能晚于结束日期")
    # recharge orders: by source tag, and a row opens the order, then the member
    visit(page, "records/orders")
    page.fill("#rec-filter input[name=src]", "poster")
    page.click("#rec-filter button[type=submit]")
    ready(page, "records")
    expect(page.locator("#rec-table tbody tr")).to_have_count(1)
    page.locator("#rec-table tbody tr").first.click()
    expect(page.locator("#dialog")).to_contain_text("充200送30")
    shot(page, "records-order-dialog-laptop")
    submit_dialog(page, "members")
    expect(page.locator("#member-card")).to_contain_text("Alice")
    # the ledger's second page
    visit(page, "records/ledger?store=sh01")
    page.click(".pager [data-go=next]")
    ready(page, "records")
    expect(page.locator(".pager")).to_contain_text("第 2 / 3 页")


def test_recharge_and_freeze_a_member_from_the_console(site, browser):
    from playwright.sync_api import expect

    bob = site.ids["bob"]
    with site.app.app_context():
        entries_before = db.session.query(LedgerEntry).filter_by(member_id=bob).count()
    page = open_console(browser, site, "admin")
    visit(page, f"members/{bob}")
    available = page.locator("#member-available")
    before = available.inner_text()
    # given the counter recharge dialog for the 100 yuan rule
    page.click("[data-act=recharge]")
    page.select_option("#dialog select[name=rule_id]", str(site.ids["rule_demo100"]))
    pick_store(page, "#dialog", "store_code", "sh01")
    page.select_option("#dialog select[name=method]", "cash")
    # when no receipt number is given, nothing is sent
    page.click("#dialog-ok")
    expect(page.locator("#dialog-error")).to_have_text("请填写小票号")
    assert page.locator("#dialog").evaluate("d => d.open")
    page.fill("#dialog input[name=receipt_no]", "BROWSER-0001")
    # then the confirmation shows the amounts in yuan before anything happens
    summary = page.locator("#rc-summary")
    expect(summary).to_contain_text("收款 100.00 元，赠送 10.00 元")
    expected_after = _fen(before) + 11_000
    expect(summary).to_contain_text(f"充值后可用余额 {_yuan(expected_after)} 元")
    shot(page, "member-recharge-confirm-laptop")
    submit_dialog(page, "members")
    expect(available).to_contain_text(_yuan(expected_after))
    # when staff freeze the card: the reason is required and the dialog shows what is frozen
    page.click("[data-act=freeze]")
    expect(page.locator("#dialog")).to_contain_text(f"可用 {_yuan(expected_after)} 元")
    page.click("#dialog-ok")
    expect(page.locator("#dialog-error")).to_have_text("请填写原因")
    confirm(page, "顾客来电要求冻结", "member-freeze-confirm-laptop")
    # then the card shows frozen, recharge is disabled, and unfreezing is offered
    expect(page.locator("#member-card .badge")).to_have_text("已冻结")
    expect(page.locator("[data-act=recharge]")).to_be_disabled()
    expect(page.locator("[data-act=unfreeze]")).to_be_visible()
    shot(page, "member-frozen-laptop")
    with site.app.app_context():
        member = db.session.get(Member, bob)
        assert member.status == "frozen"
        # one counter recharge = a principal row and a bonus row, nothing else
        assert db.session.query(LedgerEntry).filter_by(member_id=bob).count() == entries_before + 2
        audit = db.session.scalars(select(AuditLog).where(AuditLog.subject == f"member:{bob}")).all()
        assert [a.reason for a in audit if a.action == "member_frozen"] == ["顾客来电要求冻结"]
        assert_ledger_ok()


def test_withdrawal_and_reversal_show_amounts_and_move_money_once(site, browser):
    from playwright.sync_api import expect

    alice = site.ids["alice"]
    page = open_console(browser, site, "admin")
    visit(page, f"members/{alice}")
    # a withdrawal above the principal is flagged in the dialog, then a valid one goes through
    page.click("[data-act=withdraw]")
    page.fill("#dialog input[name=amount]", "100000")
    expect(page.locator("#wd-summary")).to_contain_text("超过可提现本金")
    page.fill("#dialog input[name=amount]", "12.5")
    expect(page.locator("#wd-summary")).to_contain_text("退还现金 12.50 元")
    before = _fen(page.locator("#member-available").inner_text())
    confirm(page, "顾客退卡", "member-withdraw-confirm-laptop")
    expect(page.locator("#member-history tbody tr").first).to_contain_text("-12.50")
    expect(page.locator("#member-available")).to_contain_text(_yuan(before - 1_250))
    # reversal of the latest credit row (the WeChat recharge's 30 yuan bonus), with its amount shown
    page.locator("[data-reverse]").first.click()
    expect(page.locator("#dialog .confirm-box")).to_contain_text("扣回 30.00 元（本金 0.00，赠送 30.00）")
    expect(page.locator("#dialog .confirm-box")).to_contain_text(f"冲正后可用余额 {_yuan(before - 1_250 - 3_000)} 元")
    confirm(page, "误操作", "member-reversal-confirm-laptop")
    expect(page.locator("#member-history tbody tr").first).to_contain_text("冲正")
    expect(page.locator("#member-available")).to_contain_text(_yuan(before - 1_250 - 3_000))
    with site.app.app_context():
        kinds = [e.kind for e in db.session.query(LedgerEntry).filter_by(member_id=alice)]
        assert kinds.count("withdrawal") == 1 and kinds.count("reversal") == 1
        assert_ledger_ok()


def test_hq_creates_edits_and_archives_a_rule_and_downloads_its_qr_code(site, browser, tmp_path):
    from playwright.sync_api import expect

    page = open_console(browser, site, "admin")
    visit(page, "rules")
    # create: the dialog states what the member pays and gets
    page.click("#rule-new")
    page.fill("#dialog input[name=name]", "充300送50")
    page.fill("#dialog input[name=amount]", "300")
    page.fill("#dialog input[name=bonus]", "50")
    expect(page.locator("#rule-summary")).to_contain_text("会员支付 300.00 元，到账 350.00 元")
    shot(page, "rule-create-laptop")
    submit_dialog(page, "rules")
    row = page.locator("tr", has_text="充300送50")
    expect(row).to_contain_text("300.00")
    # edit the bonus
    row.locator("[data-edit]").click()
    page.fill("#dialog input[name=bonus]", "60")
    submit_dialog(page, "rules")
    expect(page.locator("tr", has_text="充300送50")).to_contain_text("赠送 60.00 元")
    # copy its link, download its QR code as PNG and SVG
    page.locator("tr", has_text="充300送50").locator("[data-copy]").click()
    expect(page.locator("#toast")).to_contain_text(f"{site.origin}/r/")
    for fmt, magic in (("png", b"\x89PNG"), ("svg", b"<svg")):
        with page.expect_download() as info:
            page.locator("tr", has_text="充300送50").locator(f"[data-qr][data-fmt={fmt}]").click()
        target = tmp_path / f"qr.{fmt}"
        info.value.save_as(target)
        assert info.value.suggested_filename.endswith(f".{fmt}")
        assert magic in target.read_bytes()[:200]
    # archive it, after a confirmation that names it
    page.locator("tr", has_text="充300送50").locator("[data-archive]").click()
    expect(page.locator("#dialog")).to_contain_text("充 300.00 元，赠 60.00 元")
    submit_dialog(page, "rules")
    expect(page.locator("tr", has_text="充300送50")).to_contain_text("已归档")
    shot(page, "rules-after-archive-laptop")
    # a coupon and a level rule
    visit(page, "coupons")
    page.click("#coupon-new")
    page.fill("#dialog input[name=name]", "满100减20")
    page.select_option("#dialog select[name=kind]", "threshold")
    page.fill("#dialog input[name=value]", "20")
    page.fill("#dialog input[name=threshold]", "100")
    submit_dialog(page, "coupons")
    expect(page.locator("tr", has_text="满100减20")).to_contain_text("满 100.00 减 20.00 元")
    visit(page, "card-types")
    page.click("#level-new")
    page.select_option("#dialog select[name=to_card_type_id]", label="金卡")
    page.fill("#dialog input[name=threshold]", "1000")
    submit_dialog(page, "card-types")
    expect(page.locator("#view")).to_contain_text("365 天内累计充值 ≥ 1,000.00 元")
    shot(page, "card-types-with-rule-laptop")


def test_a_batch_recharge_is_uploaded_and_its_progress_shown(site, browser, tmp_path):
    from playwright.sync_api import expect

    with site.app.app_context():
        cards = {name: db.session.get(Member, site.ids[name]).card_no for name in ("alice", "carol")}
    upload = tmp_path / "welfare.csv"
    upload.write_text(
        f"会员（手机号或卡号）,金额（元）,备注\n{cards['alice']},88.5,七月福利\n{cards['carol']},20,七月福利\n"
    )
    page = open_console(browser, site, "admin")
    visit(page, "ops/batches")
    page.set_input_files("#batch-form input[name=file]", upload)
    page.fill("#batch-form input[name=note]", "七月福利")
    page.click("#batch-form button")
    expect(page.locator("#dialog")).to_contain_text("welfare.csv")
    page.click("#dialog-ok")
    # the job runs in process, or on Redis by a real RQ worker; the page polls until the batch is done
    row = page.locator("#view tbody tr").first
    expect(row).to_contain_text("welfare.csv")
    with site.app.app_context():
        run_jobs(site.app)
    expect(row).to_contain_text("已完成", timeout=15_000)
    expect(row).to_contain_text("108.50 / 108.50")
    shot(page, "ops-batch-done-laptop")
    # a file with a bad row is refused as a whole, by line number
    bad = tmp_path / "bad.csv"
    bad.write_text(f"会员（手机号或卡号）,金额（元）,备注\n{cards['alice']},abc,\n")
    page.set_input_files("#batch-form input[name=file]", bad)
    page.click("#batch-form button")
    page.click("#dialog-ok")
    expect(page.locator("#batch-errors")).to_contain_text("第 2 行")
    shot(page, "ops-batch-refused-laptop")
    with site.app.app_context():
        assert_ledger_ok()


def test_a_clerk_sees_their_own_store_only_and_recharges_at_the_counter(site, browser):
    from playwright.sync_api import expect

    page = open_console(browser, site, "clerk")
    expect(page.locator("#who")).to_contain_text("clerk（店员")
    # HQ pages are not in a clerk's menu
    for name in ("rules", "org", "audit", "ops"):
        expect(page.locator(f"#nav a[data-page={name}]")).to_be_hidden()
    shot(page, "clerk-overview-laptop")
    # the ledger lists sh01's rows, never sh02's
    visit(page, "records/ledger")
    table = page.locator("#rec-table")
    expect(table).to_contain_text("上海人民广场店")
    expect(table).not_to_contain_text("上海静安寺店")
    expect(table).not_to_contain_text("sh02-only")
    shot(page, "clerk-records-laptop")
    # asking for sh02 by filter is refused (403 store_out_of_scope) and the page says why
    status, body = site.call("GET", "/admin/api/ledger?store=sh02", token=site.token("clerk"))
    assert (status, body["error"]["code"]) == (403, "store_out_of_scope")
    visit(page, "records/ledger?store=sh02")
    expect(table).to_contain_text(body["error"]["message"])
    expect(table).not_to_contain_text("sh02-only")
    shot(page, "clerk-records-other-store-laptop")
    # a clerk recharges at the counter in their own store; no freeze or withdrawal buttons
    visit(page, f"members/{site.ids['bob']}")
    expect(page.locator("[data-act=freeze]")).to_have_count(0)
    expect(page.locator("[data-act=withdraw]")).to_have_count(0)
    page.click("[data-act=recharge]")
    page.select_option("#dialog select[name=rule_id]", str(site.ids["rule_demo100"]))
    page.fill("#dialog input[name=receipt_no]", "CLERK-0001")
    submit_dialog(page, "members")
    with site.app.app_context():
        entry = db.session.scalars(
            select(LedgerEntry).where(LedgerEntry.reference.like("offline:%:CLERK-0001")).order_by(LedgerEntry.id)
        ).first()
        assert entry is not None and entry.operator.startswith("staff:")
        assert_ledger_ok()


def test_member_search_by_phone_card_or_name(site, browser):
    from playwright.sync_api import expect

    page = open_console(browser, site, "admin")
    visit(page, "members")
    page.fill("#mem-search input[name=q]", "Alice")
    page.click("#mem-search button[type=submit]")
    ready(page, "members")
    expect(page.locator("#mem-list tbody tr")).to_have_count(1)
    shot(page, "members-search-laptop")
    page.locator("#mem-list tbody tr").first.click()
    ready(page, "members")
    expect(page.locator("#member-card")).to_contain_text("Alice")


def test_export_the_filtered_ledger_and_open_it_with_openpyxl(site, browser, tmp_path):
    from openpyxl import load_workbook
    from playwright.sync_api import expect

    page = open_console(browser, site, "admin")
    visit(page, "records/ledger?store=sh02")
    page.click("#rec-export")
    ready(page, "exports")
    # the export job runs in process, or on Redis by a real RQ worker
    with site.app.app_context():
        run_jobs(site.app)
    download_button = page.locator("[data-file]").first
    expect(download_button).to_be_visible(timeout=30_000)
    shot(page, "exports-laptop")
    with page.expect_download() as info:
        download_button.click()
    target = tmp_path / "ledger.xlsx"
    info.value.save_as(target)
    workbook = load_workbook(target, read_only=True)
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    workbook.close()
    text = "\n".join(" ".join(str(c) for c in row if c is not None) for row in rows)
    # sh02's counter recharge (500.00 principal, 80.00 bonus) and nothing of sh01 or online
    assert len(rows) >= 3, rows
    assert "500" in text and "80" in text, text
    assert "人民广场" not in text and "sh01" not in text, text


def test_hq_creates_a_clerk_on_the_staff_page_who_can_then_log_in(site, browser):
    from playwright.sync_api import expect

    page = open_console(browser, site, "admin")
    visit(page, "org")
    page.click("[data-new=staff]")
    page.fill("#dialog input[name=username]", "clerk-sh02")
    page.fill("#dialog input[name=password]", PASSWORD)
    page.select_option("#dialog select[name=role]", "clerk")
    page.select_option("#dialog select[name=store_code]", "sh02")
    submit_dialog(page, "org")
    expect(page.locator("#view")).to_contain_text("clerk-sh02")
    shot(page, "org-staff-created-laptop")
    # the new clerk sees sh02's counter recharge and nothing of sh01
    status, body = site.call("GET", "/admin/api/ledger", token=site.token("clerk-sh02"))
    assert status == 200
    assert {row["store_code"] for row in body["items"]} == {"sh02"}


def test_the_audit_log_finds_a_freeze_by_its_reason(site, browser):
    from playwright.sync_api import expect

    bob = site.ids["bob"]
    status, _ = site.call(
        "POST", f"/admin/api/members/{bob}/card", {"action": "freeze", "reason": "审计测试"}, token=site.token("admin")
    )
    assert status == 200
    page = open_console(browser, site, "admin")
    visit(page, "audit")
    page.fill("#audit-filter input[name=q]", "审计测试")
    page.click("#audit-filter button[type=submit]")
    ready(page, "audit")
    expect(page.locator("#audit-table")).to_contain_text("审计测试")
    shot(page, "audit-filtered-laptop")


def _fen(text: str) -> int:
    match = re.search(r"(-?[\d,]+)\.(\d\d)", text)
    assert match, text
    return int(match.group(1).replace(",", "")) * 100 + int(match.group(2))


def _yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"
