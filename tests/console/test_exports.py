"""Exports through HTTP: a job writes the .xlsx (a real RQ worker on Redis), progress, the download,
formula escaping, a clerk's export bounded to their store and to their row limit."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from mp_backend.extensions import db
from mp_backend.ledger import service as ledger
from mp_backend.reports import exports
from mp_backend.reports.models import ExportJob

from .conftest import run_jobs


@pytest.fixture
def rows(app, org, make_member):  # type: ignore[no-untyped-def]
    """Credits in sh01 (5) and sh02 (3), and a member whose name is a formula."""
    evil = make_member(name='=HYPERLINK("http://evil","点我")', phone="13800000001")
    for n in range(5):
        ledger.credit(evil, 100 + n, key=f"e1-{n}", operator="t", store_id=org["stores"]["sh01"], note="-1+1")
    for n in range(3):
        ledger.credit(evil, 200 + n, key=f"e2-{n}", operator="t", store_id=org["stores"]["sh02"])
    db.session.commit()
    return evil


def export(api, app, who: str, kind: str, filters: dict, status: int = 202):  # type: ignore[no-untyped-def]
    job = api(who, "POST", "/admin/api/exports", status, json={"kind": kind, "filters": filters})
    if status != 202:
        return job
    run_jobs(app)
    done = api(who, "GET", f"/admin/api/exports/{job['id']}")
    assert done["status"] == "done", done
    assert done["rows_done"] == done["rows_total"] == job["rows_total"]
    return done


def workbook_rows(api, who: str, done: dict) -> list[tuple]:  # type: ignore[type-arg]
    response = api(who, "GET", done["download_url"])
    assert response.mimetype.endswith("spreadsheetml.sheet")
    data = response.data
    response.close()
    book = load_workbook(io.BytesIO(data), read_only=True)
    table = list(book.active.iter_rows(values_only=True))
    book.close()
    return table


def test_hq_exports_the_filtered_ledger_and_opens_it(api, app, rows):
    done = export(api, app, "admin", "ledger", {"store": "sh01", "kind": "credit"})
    table = workbook_rows(api, "admin", done)
    assert table[0][0] == "流水号" and len(table) == 1 + 5
    assert {r[10] for r in table[1:]} == {"上海一店"}
    assert sorted(float(r[4]) for r in table[1:]) == [1.0, 1.01, 1.02, 1.03, 1.04]
    # a note that looks like a formula is text, escaped
    assert {r[13] for r in table[1:]} == {"'-1+1"}


def test_member_names_that_look_like_formulas_are_escaped(api, app, rows):
    table = workbook_rows(api, "admin", export(api, app, "admin", "members", {}))
    assert table[1][2] == '\'=HYPERLINK("http://evil","点我")'
    assert table[1][3] == "13800000001"
    # a clerk's export masks phones, as the list does
    clerk = workbook_rows(api, "clerk", export(api, app, "clerk", "members", {}))
    assert clerk[1][3] == "138****0001"


def test_a_clerks_export_is_bounded_to_their_store_and_their_limit(api, app, rows):
    # everything a clerk may export: their store's rows only
    table = workbook_rows(api, "clerk", export(api, app, "clerk", "ledger", {}))
    assert len(table) == 1 + 5 and {r[10] for r in table[1:]} == {"上海一店"}
    # another store by filter: refused
    assert export(api, app, "clerk", "ledger", {"store": "sh02"}, 403)["error"]["code"] == "store_out_of_scope"
    # more rows than the clerk's limit: refused with the limit, and no job recorded
    app.config["EXPORT_MAX_ROWS_CLERK"] = 4
    before = db.session.scalar(select(func.count(ExportJob.id)))
    refused = export(api, app, "clerk", "ledger", {}, 422)
    assert refused["error"]["code"] == "export_too_large" and refused["error"]["details"]["max_rows"] == 4
    db.session.rollback()
    assert db.session.scalar(select(func.count(ExportJob.id))) == before
    # HQ's own limit is EXPORT_MAX_ROWS
    app.config["EXPORT_MAX_ROWS"] = 7
    assert export(api, app, "admin", "ledger", {}, 422)["error"]["code"] == "export_too_large"


def test_bad_filters_are_refused(api, app, rows):
    bad = export(api, app, "admin", "payments", {"from": "2026-05-01", "to": "2026-01-01"}, 422)
    assert bad["error"]["code"] == "invalid_range"
    assert export(api, app, "admin", "ledger", {"kind": "nonsense"}, 400)["error"]["code"] == "invalid_request"
    assert export(api, app, "admin", "everything", {}, 400)["error"]["code"] == "invalid_request"


def test_only_the_maker_or_hq_sees_an_export(api, app, rows):
    mine = export(api, app, "sh01m", "ledger", {})
    hq = api("admin", "GET", mine["download_url"])
    assert hq.status_code == 200
    hq.close()
    for who in ("clerk", "east"):
        assert api(who, "GET", f"/admin/api/exports/{mine['id']}", 404)["error"]["code"] == "export_not_found"
        api(who, "GET", mine["download_url"], 404)


def test_a_large_export_goes_in_chunks_and_a_rerun_starts_over(api, app, org, make_member, monkeypatch):
    member = make_member()
    for n in range(45):
        ledger.credit(member, 1 + n, key=f"big-{n}", operator="t")
    db.session.commit()
    monkeypatch.setattr(exports, "CHUNK_ROWS", 10)
    done = export(api, app, "admin", "ledger", {})
    assert done["rows_done"] == 45
    table = workbook_rows(api, "admin", done)
    assert [r[0] for r in table[1:]] == sorted((r[0] for r in table[1:]), reverse=True) and len(set(table[1:])) == 45
    # a job run again after it finished does nothing; a job that died running starts over
    assert exports.run_export(done["id"])["status"] == "done"
    exports._set(done["id"], status="running", rows_done=3)
    assert exports.run_export(done["id"]) == {"id": done["id"], "status": "done", "rows": 45}


def test_a_name_with_control_characters_is_exported_not_failed(api, app, rows, make_member):
    # a WeChat nickname with an escape sequence: openpyxl cannot write it; the export still finishes
    make_member(name="Bob\x1b[31m\x07", phone="13800000002")
    db.session.commit()
    table = workbook_rows(api, "admin", export(api, app, "admin", "members", {}))
    assert "Bob\ufffd[31m\ufffd" in {row[2] for row in table[1:]}
