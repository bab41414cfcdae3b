"""Merchant console: recharges at the counter, batch recharges from a file, and the ledger records,
on the ``admin`` blueprint (/admin/api/...)."""

from __future__ import annotations

from flask import request

from ..recharge import batch as batch_service
from ..recharge import offline
from ..records import service as records
from .admin import STAFF, blp
from .admin_recharge import _times
from .auth import current_staff
from .ops_schemas import BatchOut, BatchUploadIn, EntryList, LedgerQuery, OfflineRechargeIn, OfflineRechargeOut
from .schemas import Error

UPLOAD_ENDPOINT = f"{blp.name}.batch_upload"


def _errors(view, statuses=(400, 401, 403, 404, 409)):  # type: ignore[no-untyped-def]
    for status in statuses:
        view = blp.alt_response(status, schema=Error)(view)
    return blp.doc(security=STAFF)(view)


@blp.before_request
def _upload_limit() -> None:
    # The one endpoint that takes files: a larger body than MAX_CONTENT_LENGTH, still refused by its
    # declared length (413) before it is read.
    if request.endpoint == UPLOAD_ENDPOINT:
        request.max_content_length = batch_service.max_upload_bytes()


@blp.route("/offline-recharges", methods=["POST"])
@blp.arguments(OfflineRechargeIn)
@blp.response(201, OfflineRechargeOut)
@blp.alt_response(200, schema=OfflineRechargeOut, description="the same receipt again: the first result")
@_errors
def offline_recharge(body: dict):  # type: ignore[no-untyped-def]
    """Record a recharge paid at the counter (cash or card terminal), under a rule or a free amount.

    Clerk and up, within their stores. The receipt number is the idempotency key per store."""
    result = offline.recharge_offline(current_staff().id, **body)
    answer = offline.result_dict(result)
    return answer, (200 if result.replayed else 201)


@blp.route("/batch-recharges", methods=["POST"])
@blp.arguments(BatchUploadIn, location="files")
@blp.response(202, BatchOut)
@blp.alt_response(200, schema=BatchOut, description="the same rows were uploaded before: that batch")
@_errors
@blp.alt_response(413, schema=Error)
def batch_upload(files: dict):  # type: ignore[no-untyped-def]
    """Upload a batch (.xlsx or .csv: member phone or card number, amount in yuan, note), with the
    optional form fields ``store_code`` and ``note``. Every row is checked first; errors come back by
    row number and nothing is applied. A valid batch is applied by a job: poll its progress."""
    upload = files["file"]
    try:
        data = upload.read(batch_service.max_upload_bytes() + 1)
    finally:
        upload.close()  # a large upload is spooled to a temporary file: release it now
    uploaded = batch_service.upload(
        current_staff().id,
        upload.filename or "",
        data,
        store_code=(request.form.get("store_code") or "").strip()[:32] or None,
        note=(request.form.get("note") or "")[:255],
    )
    answer = {**batch_service.progress_of(uploaded.batch.id), "duplicate": uploaded.duplicate}
    answer["encoding"] = uploaded.encoding
    return answer, (200 if uploaded.duplicate else 202)


@blp.route("/batch-recharges/<id:batch_id>", methods=["GET"])
@blp.response(200, BatchOut)
@_errors
def batch_progress(batch_id: int) -> dict:
    """A batch's progress: status, total, applied, failed, and the rows that failed while applying."""
    batch = batch_service.get_batch(current_staff().id, batch_id)
    return batch_service.progress_of(batch.id)


@blp.route("/ledger", methods=["GET"])
@blp.arguments(LedgerQuery, location="query")
@blp.response(200, EntryList)
@_errors
def ledger_records(query: dict) -> dict:
    """Ledger entries, newest first, by store, operator, kind, time range, order number and member;
    store staff see their stores' entries only."""
    page, per_page = query.pop("page"), query.pop("per_page")
    query = _times(query)
    store = query.pop("store", None)
    rows, total = records.merchant_entries(
        current_staff().id, records.EntryFilter(store_code=store, **query), page=page, per_page=per_page
    )
    return {
        "items": [records.entry_dict(row, admin=True) for row in rows],
        "total": min(total, records.TOTAL_CAP),
        "total_capped": total > records.TOTAL_CAP,
        "page": page,
        "per_page": per_page,
    }
