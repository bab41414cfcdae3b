"""The admin commands: flask staff create, flask demo load (and flask ledger check, in tests/ledger/test_check.py)."""

from __future__ import annotations

import pytest
from flask import current_app
from sqlalchemy import select

from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.members import service as members
from mp_backend.members.models import Member
from mp_backend.org import service as org_service
from mp_backend.org.models import AuditLog, Staff
from tests.conftest import assert_ledger_ok, count_rows


def staff_named(username: str) -> Staff | None:
    db.session.expire_all()
    return db.session.scalars(select(Staff).where(Staff.username == username)).first()


# ---------------------------------------------------------------------------------------------------
# flask staff create


def test_staff_create_makes_a_clerk_of_the_store(org, runner):
    # given the organisation with store sh01
    # when a clerk is created from the command line
    result = runner.invoke(
        args=["staff", "create", "bob", "--role", "clerk", "--store", "sh01", "--password", "longpassword"]
    )
    # then it succeeds, and bob is a clerk of sh01 who can log in, with an audit row
    assert result.exit_code == 0, result.output
    bob = staff_named("bob")
    assert bob is not None
    assert f"created staff bob (id {bob.id}, clerk)" in result.output
    assert (bob.role, bob.store_id, bob.active) == ("clerk", org["stores"]["sh01"], True)
    assert bob.password_hash != "longpassword"
    assert org_service.authenticate("bob", "longpassword")
    audit = db.session.scalars(select(AuditLog).where(AuditLog.subject == f"staff:{bob.id}")).one()
    assert (audit.action, audit.reason) == ("staff_create", "bob as clerk")


def test_staff_create_prompts_for_the_password_twice(org, runner):
    # given the organisation
    # when no --password is given, the password is typed and confirmed
    result = runner.invoke(
        args=["staff", "create", "carol", "--role", "hq_admin"], input="another-password\nanother-password\n"
    )
    # then the admin is created with that password, which is not echoed
    assert result.exit_code == 0, result.output
    assert "another-password" not in result.output
    assert staff_named("carol").role == "hq_admin"  # type: ignore[union-attr]
    assert org_service.authenticate("carol", "another-password")


def test_staff_create_region_manager(org, runner):
    # given region east
    # when a region manager is created for it
    result = runner.invoke(
        args=["staff", "create", "dave", "--role", "region_manager", "--region", "east", "--password", "longpassword"]
    )
    # then
    assert result.exit_code == 0, result.output
    dave = staff_named("dave")
    assert dave is not None and dave.region is not None
    assert (dave.role, dave.region.code, dave.store_id) == ("region_manager", "east", None)


def test_staff_create_with_an_unknown_role_is_refused(org, runner):
    # given the organisation
    staff_before = count_rows("staff")
    # when the role is not one of ours
    result = runner.invoke(
        args=["staff", "create", "bob", "--role", "boss", "--store", "sh01", "--password", "longpassword"]
    )
    # then click refuses it before our code runs (a usage error, exit 2), listing the roles
    assert result.exit_code == 2
    assert "Invalid value for '--role'" in result.output
    assert "clerk" in result.output and "hq_admin" in result.output
    assert count_rows("staff") == staff_before
    assert staff_named("bob") is None


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["bob", "--role", "clerk"], "store_required"),
        (["bob", "--role", "store_manager"], "store_required"),
        (["bob", "--role", "clerk", "--store", "nowhere"], "store_not_found"),
        (["bob", "--role", "region_manager"], "region_required"),
        (["bob", "--role", "region_manager", "--region", "west"], "region_not_found"),
        (["bob", "--role", "hq_admin", "--password", "short"], "weak_password"),
        (["admin", "--role", "hq_admin"], "username_taken"),
        (["   ", "--role", "hq_admin"], "invalid_username"),
    ],
    ids=[
        "clerk-no-store",
        "manager-no-store",
        "unknown-store",
        "region-manager-no-region",
        "unknown-region",
        "weak-password",
        "taken",
        "blank-name",
    ],
)
def test_staff_create_refusals_exit_non_zero_with_the_error_code(org, runner, args, code):
    # given the organisation (which has a user "admin")
    staff_before, audits_before = count_rows("staff"), count_rows("audit_log")
    if "--password" not in args:
        args = [*args, "--password", "longpassword"]
    # when the command is refused by the service
    result = runner.invoke(args=["staff", "create", *args])
    # then it exits 1 with our error code, and creates nothing
    assert result.exit_code == 1, result.output
    assert f"Error: {code}: " in result.output
    assert "Traceback" not in result.output
    assert (count_rows("staff"), count_rows("audit_log")) == (staff_before, audits_before)


# ---------------------------------------------------------------------------------------------------
# flask demo load


def demo_state() -> dict[str, object]:
    db.session.expire_all()
    appid = current_app.config["WECHAT_WXA_APPID"]
    balances = {}
    for openid in ("demo-alice", "demo-bob", "demo-carol"):
        member = members.find_by_openid(appid, openid)
        assert member is not None, openid
        balance = ledger.get_balance(member.id)
        balances[openid] = (member.id, member.name, balance.principal_fen, balance.bonus_fen, balance.held_fen)
    return {
        "members": count_rows("member"),
        "openids": count_rows("member_openid"),
        "staff": count_rows("staff"),
        "stores": count_rows("store"),
        "entries": count_rows("ledger_entry"),
        "balances": balances,
    }


def test_demo_load_twice_changes_nothing(runner):
    # given an empty database, loaded once
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    after_first = demo_state()
    # when it is loaded again
    second = runner.invoke(args=["demo", "load"])
    # then it succeeds and nothing is added or credited twice
    assert second.exit_code == 0, second.output
    assert demo_state() == after_first
    assert after_first["members"] == 3
    assert after_first["staff"] == 2
    assert {openid: b[2:] for openid, b in after_first["balances"].items()} == {  # type: ignore[attr-defined]
        "demo-alice": (20_000, 2_000, 0),
        "demo-bob": (5_000, 0, 0),
        "demo-carol": (0, 0, 0),
    }
    alice_id = after_first["balances"]["demo-alice"][0]  # type: ignore[index]
    assert db.session.scalar(select(Member.name).where(Member.id == alice_id)) == "Alice 王"
    assert "member Alice 王: login code sandbox-demo-alice" in second.output
    # and the ledger check passes, through the command too
    check = runner.invoke(args=["ledger", "check"])
    assert check.exit_code == 0, check.output
    assert_ledger_ok()


def test_demo_loaded_before_unionids_survives_a_changed_appid(app, runner):
    # given demo Alice as the landed demo made her: a mini-program openid, no unionid, 200.00 + 20.00
    alice = members.login_with_openid("wxoldminiprogram01", "demo-alice").member
    ledger.credit(alice.id, 20_000, key="demo:demo-alice:principal", operator="demo", note="示例数据")
    ledger.credit(alice.id, 2_000, bucket="bonus", key="demo:demo-alice:bonus", operator="demo", note="示例数据")
    # when demo load runs under today's (other) appids
    result = runner.invoke(args=["demo", "load"])
    # then it succeeds (no IdempotencyConflict) and Alice is the same member, now with her unionid
    assert result.exit_code == 0, result.output
    state = demo_state()
    assert state["balances"]["demo-alice"][0] == alice.id  # type: ignore[index]
    assert state["balances"]["demo-alice"][2:] == (20_000, 2_000, 0)  # type: ignore[index]
    assert db.session.scalar(select(Member.unionid).where(Member.id == alice.id)) == "sandbox-union-demo-alice"
    assert state["members"] == 3
    assert_ledger_ok()
