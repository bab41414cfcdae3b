"""/openapi.json: served, generated from the schemas that validate requests, with our security schemes
and our one error shape; and what it documents is what the server does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mp_backend.ledger import service as ledger
from tests.web.conftest import bearer

MEMBER_PATHS = {("post", "/api/auth/wxa-login"), ("get", "/api/me"), ("post", "/api/me/phone")}
ADMIN_PATHS = {
    ("post", "/admin/api/auth/login"),
    ("get", "/admin/api/me"),
    ("get", "/admin/api/members/{member_id}"),
    ("post", "/admin/api/members/{member_id}/status"),
    ("post", "/admin/api/members/{member_id}/withdrawals"),
    ("post", "/admin/api/ledger/{entry_id}/reversal"),
}
PUBLIC = {("post", "/api/auth/wxa-login"), ("post", "/admin/api/auth/login")}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def spec(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    return response.get_json()  # type: ignore[no-any-return]


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node
        target: Any = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): op for path, item in spec["paths"].items() for method, op in item.items() if method in METHODS
    }


def test_openapi_is_served_as_openapi_3(spec):
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"]
    assert spec["info"]["version"]


def test_openapi_lists_the_member_and_admin_paths(spec):
    assert set(operations(spec)) >= MEMBER_PATHS | ADMIN_PATHS


def test_openapi_declares_the_security_schemes(spec):
    schemes = spec["components"]["securitySchemes"]
    for name in ("memberToken", "staffToken"):
        assert schemes[name]["type"] == "http"
        assert schemes[name]["scheme"] == "bearer"


def test_each_operation_names_the_token_it_needs(spec):
    ops = operations(spec)
    for key in MEMBER_PATHS | ADMIN_PATHS:
        security = ops[key].get("security", spec.get("security"))
        if key in PUBLIC:
            assert not security, key
        else:
            expected = "memberToken" if key in MEMBER_PATHS else "staffToken"
            assert security == [{expected: []}], key


def test_every_error_response_is_our_error_shape(spec):
    # every documented error (4xx, 5xx, default) has a JSON body {"error": {"code", "message"}}
    checked = 0
    for key, op in operations(spec).items():
        for status, response in op["responses"].items():
            if status != "default" and int(status) < 400:
                continue
            schema = resolve(spec, resolve(spec, response)["content"]["application/json"]["schema"])
            assert schema["type"] == "object", (key, status)
            assert "error" in schema["required"], (key, status)
            body = resolve(spec, schema["properties"]["error"])
            assert {"code", "message"} <= set(body["required"]), (key, status)
            assert body["properties"]["code"]["type"] == "string"
            assert body["properties"]["message"]["type"] == "string"
            checked += 1
    assert checked >= 2 * len(MEMBER_PATHS | ADMIN_PATHS)


def test_request_schemas_come_from_the_validating_schemas(spec):
    # the document is generated from the marshmallow schemas: their constraints show up in it
    ops = operations(spec)
    login = resolve(spec, ops[("post", "/api/auth/wxa-login")]["requestBody"]["content"]["application/json"]["schema"])
    assert login["required"] == ["code"]
    assert (login["properties"]["code"]["minLength"], login["properties"]["code"]["maxLength"]) == (1, 128)
    withdrawal = ops[("post", "/admin/api/members/{member_id}/withdrawals")]
    body = resolve(spec, withdrawal["requestBody"]["content"]["application/json"]["schema"])
    assert {"amount_fen", "reason", "request_id"} <= set(body["required"])
    assert body["properties"]["amount_fen"]["type"] == "integer"
    assert body["properties"]["amount_fen"]["minimum"] == 1


def test_invalid_input_is_documented_with_the_status_the_server_answers(client, spec):
    # given the server answers a body that fails validation with 400 (never 422)
    response = client.post("/api/auth/wxa-login", json={})
    assert response.status_code == 400
    # then every operation that takes a body documents 400 for it, and not a 422 it never sends
    wrong = {}
    for key, op in operations(spec).items():
        if "requestBody" in op:
            statuses = set(op["responses"])
            # a 422 documented as a refusal of what was asked (a range, an export's size) is not validation's
            generic_422 = "422" in statuses and "invalid_range" not in op["responses"]["422"].get("description", "")
            if "400" not in statuses or generic_422:
                wrong[f"{key[0].upper()} {key[1]}"] = sorted(statuses)
    assert wrong == {}


def test_operations_behind_a_token_document_401(spec):
    missing = [
        f"{method.upper()} {path}"
        for (method, path), op in operations(spec).items()
        if op.get("security") and "401" not in op["responses"]
    ]
    assert missing == []


def test_responses_fit_their_documented_schemas(client, spec, org):
    # given a member token and a staff token, and a member with money
    login = client.post("/api/auth/wxa-login", json={"code": "sandbox-alice"})
    staff = client.post("/admin/api/auth/login", json={"username": "admin", "password": "password-1"})
    member_id = login.get_json()["member"]["id"]
    staff_headers = bearer(staff.get_json()["token"])
    ledger.credit(member_id, 1_000, key="fund", operator="test")
    # when each kind of answer is asked for
    answers = {
        ("post", "/api/auth/wxa-login"): login,
        ("get", "/api/me"): client.get("/api/me", headers=bearer(login.get_json()["token"])),
        ("post", "/admin/api/auth/login"): staff,
        ("get", "/admin/api/me"): client.get("/admin/api/me", headers=staff_headers),
        ("get", "/admin/api/members/{member_id}"): client.get(f"/admin/api/members/{member_id}", headers=staff_headers),
        ("post", "/admin/api/members/{member_id}/withdrawals"): client.post(
            f"/admin/api/members/{member_id}/withdrawals",
            json={"amount_fen": 100, "reason": "退卡", "request_id": "w-1"},
            headers=staff_headers,
        ),
    }
    # then each status is documented, and each body fits the documented schema
    ops = operations(spec)
    for key, response in answers.items():
        status = str(response.status_code)
        documented = ops[key]["responses"]
        assert status in documented, (key, status)
        schema = resolve(spec, resolve(spec, documented[status])["content"]["application/json"]["schema"])
        assert_fits(spec, schema, response.get_json(), f"{key}")


def assert_fits(spec: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    """A small structural check: types, required properties, no undocumented properties."""
    schema = resolve(spec, schema)
    kind = schema.get("type")
    if value is None:
        assert schema.get("nullable") or kind is None, f"{where}: null"
        return
    if kind == "object":
        assert isinstance(value, dict), where
        props = schema.get("properties", {})
        assert set(schema.get("required", [])) <= set(value), f"{where}: missing {set(schema['required']) - set(value)}"
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{where}: undocumented {set(value) - set(props)}"
        for name, sub in props.items():
            if name in value:
                assert_fits(spec, sub, value[name], f"{where}.{name}")
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r}"
    elif kind == "string":
        assert isinstance(value, str), f"{where}: {value!r}"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{where}: {value!r}"


def test_every_readme_section_the_document_points_to_exists(spec):
    # given the README's headings
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    headings = {line.lstrip("#").strip() for line in readme.splitlines() if line.startswith("#")}
    # when the document mentions the README anywhere
    text = json.dumps(spec, ensure_ascii=False)
    mentions = re.findall(r"README[^\"]*", text)
    # then each mention names a section, and that section exists
    assert mentions
    for mention in mentions:
        sections = re.findall(r"“([^”]+)”", mention)
        assert sections, f"{mention!r} names no README section"
        assert set(sections) <= headings, f"{mention!r}: no such README section"
