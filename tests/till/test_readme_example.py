"""The README's signing section: its worked example holds byte for byte, and a small client written
from its words alone (hmac and hashlib, not our signing code) works against the server end to end."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from pathlib import Path

from mp_backend.clients import service as clients
from tests.conftest import assert_ledger_ok
from tests.till.conftest import balance_of

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Open API for the till and shop")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def examples() -> list[dict[str, str]]:
    """Each worked example: its inputs, the string to sign and the signature, as the README prints them."""
    text = section()
    blocks = re.findall(r"```text\n(.*?)\n```", text, re.S)
    signatures = re.findall(r"`X-Signature: ([0-9a-f]{64})`", text)
    inputs = dict(line.split(":", 1) for line in blocks[0].splitlines())
    inputs = {k.strip(): v.strip() for k, v in inputs.items()}
    first = {**inputs, "string": blocks[1], "signature": signatures[0]}
    method, path = blocks[2].split("\n")[:2]
    second = {**inputs, "method": method, "path": path, "body": "", "string": blocks[2], "signature": signatures[1]}
    return [first, second]


def readme_signature(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Written from the README: five lines joined by \\n, the last the hex SHA-256 of the body; HMAC-SHA256."""
    lines = [method, path, timestamp, nonce, hashlib.sha256(body).hexdigest()]
    return hmac.new(secret.encode("utf-8"), "\n".join(lines).encode("utf-8"), hashlib.sha256).hexdigest()


def test_the_worked_examples_hold_byte_for_byte():
    found = examples()
    assert len(found) == 2
    for example in found:
        body = example["body"].encode("utf-8")
        args = (example["method"], example["path"], example["timestamp"], example["nonce"], body)
        # the string the README prints is the server's string to sign, and its last line the body's hash
        assert clients.string_to_sign(*args) == example["string"]
        assert example["string"].rsplit("\n", 1)[1] == hashlib.sha256(body).hexdigest()
        # the signature the README prints is what the server computes, and what the README's recipe gives
        assert clients.signature(example["secret"], *args) == example["signature"]
        assert readme_signature(example["secret"], *args) == example["signature"]
    assert found[1]["path"].count("?") == 1 and found[1]["method"] == "GET"


class ReadmeClient:
    """A till written from the README alone: its own signing, the test client as transport."""

    def __init__(self, http, client_id: str, secret: str) -> None:  # type: ignore[no-untyped-def]
        self.http, self.client_id, self.secret = http, client_id, secret

    def send(self, method: str, path: str, payload: dict | None = None, key: str | None = None):  # type: ignore[no-untyped-def]
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
        headers = {
            "X-Client-Id": self.client_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": readme_signature(self.secret, method, path, timestamp, nonce, body),
        }
        if key:
            headers["Idempotency-Key"] = key
        return self.http.open(path, method=method, data=body, headers=headers, content_type="application/json")


def test_end_to_end_with_a_client_written_from_the_readme(client, runner, org, member):
    # given a client created on the command line, as the README says
    result = runner.invoke(args=["clients", "create", "一号收银台", "--store", "sh01"])
    assert result.exit_code == 0, result.output
    printed = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    till = ReadmeClient(client, printed["client_id"], printed["secret"])
    # when it looks the member up by phone (a query string in the signed path)
    found = till.send("GET", f"/open/api/v1/members?phone={member['phone']}")
    assert found.status_code == 200, found.get_data(as_text=True)
    assert found.get_json()["member_id"] == member["id"]
    # and charges 12.50, retrying once as if the answer had been lost
    order = {"member": {"card_no": member["card_no"]}, "amount_fen": 1250, "order_no": "POS-1", "store_code": "sh01"}
    charged = till.send("POST", "/open/api/v1/charges", order, key="pos-1")
    retried = till.send("POST", "/open/api/v1/charges", order, key="pos-1")
    assert charged.status_code == 201 and retried.status_code == 201, charged.get_data(as_text=True)
    assert retried.get_json() == charged.get_json()
    charge_id = charged.get_json()["charge_id"]
    # and refunds 2.50, holds 5.00 and captures 3.00 of it, and voids another hold
    refunded = till.send("POST", "/open/api/v1/refunds", {"charge_id": charge_id, "amount_fen": 250}, key="r-1")
    assert refunded.status_code == 201, refunded.get_data(as_text=True)
    hold = {**order, "amount_fen": 500, "order_no": "POS-2"}
    held = till.send("POST", "/open/api/v1/holds", hold, key="h-1").get_json()
    captured = till.send("POST", f"/open/api/v1/holds/{held['hold_id']}/capture", {"amount_fen": 300}, key="c-1")
    assert captured.status_code == 200, captured.get_data(as_text=True)
    other = till.send("POST", "/open/api/v1/holds", {**hold, "order_no": "POS-3"}, key="h-2").get_json()
    assert till.send("POST", f"/open/api/v1/holds/{other['hold_id']}/void", key="v-1").status_code == 200
    listed = till.send("GET", "/open/api/v1/charges?order_no=POS-1").get_json()["items"]
    # then the member paid 12.50 - 2.50 + 3.00 and everything adds up
    assert listed[0]["refunded_fen"] == 250
    assert sum(balance_of(member["id"])) == 40_000 - 1_250 + 250 - 300
    assert_ledger_ok()
