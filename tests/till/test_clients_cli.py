"""flask --app wsgi clients create NAME [--store CODE] | list | deactivate | reactivate, and what a
deactivated client meets at the open API: money-moving requests refused from the commit on, whatever a
worker's client cache (OPEN_CLIENT_CACHE_SECONDS) holds; reads within that bound."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, text

from mp_backend.extensions import db
from mp_backend.org.models import AuditLog
from tests.conftest import assert_ledger_ok, count_rows
from tests.till.conftest import balance_of, new_till
from tests.web.conftest import error_of


def test_create_prints_the_id_and_secret_on_their_own_lines(runner, org):
    result = runner.invoke(args=["clients", "create", "网店"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("client_id: tc_") and lines[1].startswith("secret: ")
    secret = lines[1].removeprefix("secret: ")
    assert len(secret) >= 32
    row = db.session.execute(text("SELECT client_id, store_id, secret_ciphertext FROM open_client")).one()
    assert row[0] == lines[0].removeprefix("client_id: ") and row[1] is None and secret not in row[2]


def test_an_unknown_store_is_refused_and_creates_nothing(runner, org):
    result = runner.invoke(args=["clients", "create", "收银台", "--store", "zz99"])
    assert result.exit_code != 0 and "store_not_found" in result.output
    assert db.session.execute(text("SELECT COUNT(*) FROM open_client")).scalar_one() == 0


def created(runner, *args: str) -> str:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["clients", "create", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[0].removeprefix("client_id: ")


def audit_rows() -> list[AuditLog]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditLog).where(AuditLog.action.like("open_client_%")).order_by(AuditLog.id)))


def list_lines(runner) -> dict[str, str]:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["clients", "list"])
    assert result.exit_code == 0, result.output
    return {line.split()[0]: line for line in result.stdout.splitlines()}


def test_list_deactivate_and_reactivate_with_audit(runner, org):
    # given two clients, one for a store
    shop = created(runner, "网店")
    till = created(runner, "上海一店收银", "--store", "sh01")
    lines = list_lines(runner)
    assert " active " in lines[shop] and "every store" in lines[shop] and lines[shop].endswith("网店")
    assert " active " in lines[till] and "store sh01" in lines[till]
    # when the shop is deactivated by its name, by a staff member, with a reason
    done = runner.invoke(args=["clients", "deactivate", "网店", "--by", "admin", "--reason", "网店停用"])
    assert done.exit_code == 0, done.output
    assert f"{shop} (网店) deactivated by admin" in done.stdout
    assert "OPEN_CLIENT_CACHE_SECONDS" in done.stderr
    # then the list says so and since when; the other client is untouched
    lines = list_lines(runner)
    assert " DEACTIVATED 20" in lines[shop] and " active " in lines[till]
    # and one audit row says who, when and why
    [row] = audit_rows()
    assert (row.action, row.subject, row.reason) == (
        "open_client_deactivate",
        f"open_client:{shop}",
        "by admin: 网店停用",
    )
    assert row.staff_id == org["staff"]["admin"] and row.created_at is not None
    # deactivating again changes nothing and audits nothing
    again = runner.invoke(args=["clients", "deactivate", shop, "--by", "admin"])
    assert again.exit_code == 0 and "already deactivated" in again.stdout
    assert len(audit_rows()) == 1
    # reactivating by client_id, by someone who is not a staff member: audited with the name given
    back = runner.invoke(args=["clients", "reactivate", shop, "--by", "ops-oncall"])
    assert back.exit_code == 0, back.output
    assert " active " in list_lines(runner)[shop]
    last = audit_rows()[-1]
    assert (last.action, last.staff_id, last.reason) == ("open_client_reactivate", None, "by ops-oncall")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["nobody"], "client_not_found"),
        (["收银台"], "client_ambiguous"),  # two clients share the name: use the client_id
        (["收银台", "--by", " "], "invalid_operator"),
    ],
)
def test_deactivate_refusals_change_nothing(runner, org, args, code):
    created(runner, "收银台")
    created(runner, "收银台")
    result = runner.invoke(args=["clients", "deactivate", *args])
    assert result.exit_code != 0 and code in result.output
    assert audit_rows() == []
    assert db.session.execute(text("SELECT COUNT(*) FROM open_client WHERE active = 1")).scalar_one() == 2


def test_deactivate_defaults_to_the_shells_login_name(runner, org, monkeypatch):
    shop = created(runner, "网店")
    monkeypatch.setenv("LOGNAME", "deploy")  # getpass reads LOGNAME first
    assert runner.invoke(args=["clients", "deactivate", shop]).exit_code == 0
    assert audit_rows()[-1].reason == "by deploy"


# ---------------------------------------------------------------------------------------------------
# At the open API: a worker that cached the client row (OPEN_CLIENT_CACHE_SECONDS) before it was stopped


def charge(till, member, order_no: str, key: str):  # type: ignore[no-untyped-def]
    return till.charge({"card_no": member["card_no"]}, 100, order_no, key=key)


@pytest.fixture
def cached_till(app, client, org, member):  # type: ignore[no-untyped-def]
    """A till this worker has just served (its row cached for 5 s), with one charge made."""
    app.config["OPEN_CLIENT_CACHE_SECONDS"] = 5
    till = new_till(client, "收银台")
    assert charge(till, member, "DA-1", "k-1").status_code == 201
    return till


def test_deactivated_client_moves_no_money_at_once_despite_the_cache(runner, cached_till, member):
    till = cached_till
    # when the client is deactivated (the command runs in another process: this worker's cache still
    # holds the active row)
    assert runner.invoke(args=["clients", "deactivate", till.client_id, "--by", "admin"]).exit_code == 0
    # then, at once, every money-moving request is refused with a clear code, and nothing moves
    refused = charge(till, member, "DA-2", "k-2")
    assert refused.status_code == 403 and error_of(refused)["code"] == "client_deactivated"
    hold = till.hold({"card_no": member["card_no"]}, 100, "DA-3", key="k-3")
    assert hold.status_code == 403 and error_of(hold)["code"] == "client_deactivated"
    # a retry of a charge it made before is not answered from its stored answer either
    retry = charge(till, member, "DA-1", "k-1")
    assert retry.status_code == 403 and error_of(retry)["code"] == "client_deactivated"
    assert balance_of(member["id"]) == (29_925, 9_975, 0)
    assert count_rows("open_request") == 1
    # a read may still be answered by this worker within the cache's bound (5 s here), never after it
    assert till.get(f"/open/api/v1/members?card_no={member['card_no']}").status_code == 200
    assert_ledger_ok()


def test_deactivated_client_reads_are_refused_once_the_cache_expires(app, runner, cached_till, member):
    till = cached_till
    app.config["OPEN_CLIENT_CACHE_SECONDS"] = 0.2  # read per request from the next miss on
    app.extensions["open_client_cache"].clear()
    assert till.get(f"/open/api/v1/members?card_no={member['card_no']}").status_code == 200  # cached again
    assert runner.invoke(args=["clients", "deactivate", till.client_id, "--by", "admin"]).exit_code == 0
    time.sleep(0.25)
    read = till.get(f"/open/api/v1/members?card_no={member['card_no']}")
    assert read.status_code == 403 and error_of(read)["code"] == "client_deactivated"
    # reactivated: let in again once the cached (inactive) row expires, with the same secret
    assert runner.invoke(args=["clients", "reactivate", till.client_id, "--by", "admin"]).exit_code == 0
    time.sleep(0.25)
    assert charge(till, member, "DA-4", "k-4").status_code == 201
    assert balance_of(member["id"]) == (29_850, 9_950, 0)
    assert_ledger_ok()


def test_a_wrong_signature_of_a_deactivated_client_learns_nothing(runner, cached_till, member):
    till = cached_till
    assert runner.invoke(args=["clients", "deactivate", till.client_id, "--by", "admin"]).exit_code == 0
    till.secret = "not-the-secret"
    refused = charge(till, member, "DA-5", "k-5")
    assert refused.status_code == 401 and error_of(refused)["code"] == "signature_invalid"
