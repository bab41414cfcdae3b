"""Console API tests: the real app (and the fake WeChat) through HTTP, staff of every role."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.ops.conftest import run_jobs  # noqa: F401
from tests.recharge.conftest import admin, card_types, rule, staff_token  # noqa: F401
from tests.web.conftest import app, bearer, client, fake, wxa_login  # noqa: F401


@pytest.fixture
def app_overrides(tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {"EXPORT_DIR": str(tmp_path / "exports")}


def login(client: FlaskClient, username: str, password: str = "password-1") -> str:  # noqa: F811
    response = client.post("/admin/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["token"]  # type: ignore[no-any-return]


@pytest.fixture
def tokens(client: FlaskClient, org: dict) -> dict[str, str]:  # noqa: F811
    return {
        name: login(client, username)
        for name, username in (("admin", "admin"), ("east", "east"), ("sh01m", "sh01m"), ("clerk", "sh01c"))
    }


@pytest.fixture
def api(client: FlaskClient, tokens: dict[str, str]):  # type: ignore[no-untyped-def]  # noqa: F811
    """api(who, method, path, status=200, **kwargs) -> JSON (or the response for files)."""

    def call(who: str, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = client.open(path, method=method, headers=bearer(tokens[who]), **kwargs)
        assert response.status_code == status, f"{response.status_code} {response.get_data(as_text=True)[:500]}"
        return response.get_json() if response.is_json else response

    return call
