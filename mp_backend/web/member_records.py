"""Members' own records, on the ``member`` blueprint (/api/me/ledger)."""

from __future__ import annotations

from ..records import service as records
from .auth import current_member
from .member import blp
from .ops_schemas import EntryList, RecordsPage
from .schemas import Error


@blp.route("/me/ledger", methods=["GET"])
@blp.arguments(RecordsPage, location="query")
@blp.response(200, EntryList)
@blp.alt_response(400, schema=Error)
@blp.alt_response(401, schema=Error)
@blp.doc(security=[{"memberToken": []}])
def my_ledger(query: dict) -> dict:
    """The member's balance changes, newest first: what (in words), amount, buckets, balance after,
    store and time."""
    member = current_member()
    rows, total = records.member_entries(member.id, page=query["page"], per_page=query["per_page"])
    return {
        "items": [records.entry_dict(row) for row in rows],
        "total": total,
        "page": query["page"],
        "per_page": query["per_page"],
    }
