"""flask --app wsgi clients create NAME [--store CODE]."""

from __future__ import annotations

from sqlalchemy import text

from mp_backend.extensions import db


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
