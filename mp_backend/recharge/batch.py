"""Batch recharges (company welfare, migration from another system) from an uploaded .xlsx or .csv.

The file has a header row and one member per row: the member (phone or card number), the amount in
yuan (``100``, ``88.5``, ``88.50``; parsed by ``money.parse_yuan``, never through a float), a note.
Every row is validated before anything is stored, and every problem is reported by its row number in
the file (the header is row 1): unknown or ambiguous member, bad amount, the same member twice, past
the principal cap, frozen or lost card, a formula (a cell starting with ``=``, ``+``, ``-`` or ``@``),
too many rows (``BATCH_MAX_ROWS``, default 10,000: counted while reading, the rest is never read),
a CSV neither UTF-8 (with or without BOM) nor GBK/GB18030.

A valid file becomes a batch (its rows stored) and ``jobs.batch.apply_batch`` applies it, one row
per transaction: the ledger credit (key ``batch:<id>:<row>``), the row's status and the batch's
counters commit together, so a crash between rows loses nothing and a run again applies only the
rows still pending, each exactly once. The batch's key is the SHA-256 of its validated rows (member,
amount, note; UNIQUE): the same rows uploaded again, as the same file or another format, answer the
first batch and credit nothing. To pay the same people again, change the notes (e.g. the month).

Permission: hq_admin (any store or none) and region_manager (a store of their region, required):
a batch moves money for many members at once, beyond what a store's staff decide.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import AppError, Forbidden, MemberFrozen, NotFound, ValidationFailed
from ..extensions import db, jobs
from ..ledger import service as ledger
from ..members.models import Member
from ..models_base import utcnow
from ..money import parse_yuan, yuan
from ..notices import service as notices
from ..org import service as org
from ..org.models import Staff
from ..transaction import RetryTransaction, transactional
from .offline import check_cap
from .ops_models import RechargeBatch, RechargeBatchRow

BATCH_ROLES = ("hq_admin", "region_manager")
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_UNZIPPED_BYTES = 64 * 1024 * 1024  # an .xlsx is a zip: refuse a bomb before openpyxl opens it
MAX_LISTED_ERRORS = 200
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
JOB = "jobs.batch.apply_batch"

batch_t = RechargeBatch.__table__
row_t = RechargeBatchRow.__table__

# Tests set this to interrupt a run after a row has committed (as a crash would).
after_row_hook: Callable[[int, int], None] | None = None


def _setting(name: str, default: int) -> int:
    import os

    value = current_app.config.get(name) or os.environ.get(name)
    return int(value) if value not in (None, "") else default


def max_rows() -> int:
    return _setting("BATCH_MAX_ROWS", DEFAULT_MAX_ROWS)


def max_upload_bytes() -> int:
    return _setting("BATCH_UPLOAD_MAX_BYTES", DEFAULT_MAX_UPLOAD_BYTES)


class BatchInvalid(ValidationFailed):
    code, message = "batch_invalid", "文件中有错误，未做任何充值，请按行号修改后重新上传"


class BatchTooManyRows(AppError):
    status, code, message = 413, "batch_too_many_rows", "文件行数过多"


class BatchBadEncoding(ValidationFailed):
    code, message = "batch_bad_encoding", "无法识别文件编码：请另存为 UTF-8 或 GBK 编码的 CSV，或 .xlsx"


class BatchBadFile(ValidationFailed):
    code, message = "batch_bad_file", "请上传 .xlsx 或 .csv 文件"


class BatchNotFound(NotFound):
    code, message = "batch_not_found", "批量充值记录不存在"


@dataclass
class RowError:
    row: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "code": self.code, "message": self.message}


@dataclass
class ParsedRow:
    row: int
    member_ref: str
    amount_fen: int
    note: str
    member_id: int = 0


@dataclass
class Parsed:
    rows: list[ParsedRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    encoding: str = ""


# ---------------------------------------------------------------------------------------------------
# Reading the file: cells as text, rows counted as they come


HEADER_WORDS = {
    "member": ("member", "会员", "手机", "卡号", "phone", "card"),
    "amount": ("amount", "金额"),
    "note": ("note", "备注", "remark"),
}


def _header(cells: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, cell in enumerate(cells):
        text = cell.strip().lower()
        for name, words in HEADER_WORDS.items():
            if name not in found and any(word in text for word in words):
                found[name] = index
                break
    return found


def _cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a person typed: numbers without a float's artefacts."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr is the shortest text that reads back as this float: 88.5 -> "88.5", 1e-05 -> "1e-05"
        # (refused by parse_yuan). A phone typed as a number arrives as 13800138000.0.
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def _csv_rows(data: bytes) -> tuple[Iterator[list[str]], str]:
    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        text, encoding = data[3 if bom else 0 :].decode("utf-8"), "utf-8-sig" if bom else "utf-8"
    except UnicodeDecodeError:
        if bom:
            raise BatchBadEncoding() from None
        try:  # Excel in China saves CSV as GBK (GB18030 is its superset)
            text, encoding = data.decode("gb18030"), "gbk"
        except UnicodeDecodeError:
            raise BatchBadEncoding() from None
    if "\x00" in text:
        raise BatchBadEncoding("文件含有无效字符（可能是 UTF-16 编码）：请另存为 UTF-8 或 GBK 编码的 CSV")
    return csv.reader(io.StringIO(text, newline="")), encoding


def _xlsx_rows(data: bytes) -> Iterator[list[Any]]:
    from openpyxl import load_workbook

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        if sum(info.file_size for info in archive.infolist()) > MAX_UNZIPPED_BYTES:
            raise BatchBadFile("表格解压后过大，请拆分后上传")
        # read_only streams the sheet row by row; formulas stay formulas (data_only=False).
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise BatchBadFile("无法读取该 .xlsx 文件，请用 Excel 另存后再上传") from error
    try:
        sheet = book.worksheets[0]
        for row in sheet.iter_rows(max_col=8):
            yield [cell.value if getattr(cell, "data_type", None) != "f" else _formula(cell.value) for cell in row]
    finally:
        book.close()


def _formula(value: Any) -> str:
    text = str(value or "")
    return text if text.startswith("=") else f"={text}"


def read_rows(filename: str, data: bytes) -> Parsed:
    """The file's rows, each cell checked; the rows counted as they come (too many: 413, at once)."""
    name = (filename or "").lower()
    if name.endswith(".xlsx"):
        rows: Iterator[list[Any]] = _xlsx_rows(data)
        encoding = "xlsx"
    elif name.endswith(".csv") or name.endswith(".txt"):
        rows, encoding = _csv_rows(data)
    else:
        raise BatchBadFile()
    parsed = Parsed(encoding=encoding)
    limit = max_rows()
    try:
        _read(rows, parsed, limit)
    except csv.Error as error:
        raise BatchBadFile(f"CSV 格式有误：{error}"[:200]) from None
    return parsed


def _read(rows: Iterator[list[Any]], parsed: Parsed, limit: int) -> None:
    header: dict[str, int] | None = None
    for line, raw in enumerate(rows, start=1):
        cells = [_cell_text(value) for value in raw]
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = _header(cells)
            if "member" not in header or "amount" not in header:
                raise BatchInvalid(
                    "第 1 行须是表头：会员（手机号或卡号）、金额（元）、备注",
                    code="batch_header_missing",
                    details={"row": line, "found": cells[:8]},
                )
            continue
        if len(parsed.rows) + len(parsed.errors) >= limit:
            raise BatchTooManyRows(f"文件超过 {limit} 行，请拆分后分批上传", details={"max_rows": limit})
        _parse_row(line, cells, header, parsed)
    if header is None:
        raise BatchInvalid("文件是空的", code="batch_empty")
    if not parsed.rows and not parsed.errors:
        raise BatchInvalid("文件只有表头，没有要充值的行", code="batch_empty")


def _parse_row(line: int, cells: list[str], header: dict[str, int], parsed: Parsed) -> None:
    def cell(name: str) -> str:
        index = header.get(name)
        return cells[index] if index is not None and index < len(cells) else ""

    for text in cells:
        # Spreadsheets evaluate " =1+1" too, and the note is stored stripped: look past the spaces.
        if text.startswith(FORMULA_PREFIXES) or text.lstrip().startswith(FORMULA_PREFIXES):
            parsed.errors.append(
                RowError(line, "formula", f"单元格以 {text[:1]!r} 开头，按公式处理，已拒绝：请只填写数值或文字")
            )
            return
    member_ref = cell("member").strip()
    if not member_ref:
        parsed.errors.append(RowError(line, "member_missing", "缺少会员手机号或卡号"))
        return
    try:
        amount = parse_yuan(cell("amount"))
    except ValueError:
        parsed.errors.append(
            RowError(
                line, "invalid_amount", f"金额 {cell('amount')[:20]!r} 无效：填写元，最多两位小数，如 100 或 88.50"
            )
        )
        return
    if not 0 < amount <= ledger.MAX_AMOUNT_FEN:
        parsed.errors.append(RowError(line, "invalid_amount", "金额须大于 0 且不超过 100 万元"))
        return
    note = cell("note").strip()
    if len(note) > 255:
        parsed.errors.append(RowError(line, "note_too_long", "备注最长 255 个字符"))
        return
    parsed.rows.append(ParsedRow(line, member_ref[:64], amount, note))


# ---------------------------------------------------------------------------------------------------
# Checking the rows against the members, all before anything is stored


def _resolve_members(parsed: Parsed) -> None:
    refs = sorted({row.member_ref for row in parsed.rows})
    by_card: dict[str, Member] = {}
    by_phone: dict[str, Member] = {}
    for start in range(0, len(refs), 500):
        chunk = refs[start : start + 500]
        for member in db.session.scalars(select(Member).where(or_(Member.card_no.in_(chunk), Member.phone.in_(chunk)))):
            if member.card_no in chunk:
                by_card[member.card_no] = member
            if member.phone in chunk:
                by_phone[str(member.phone)] = member
    cap = org.get_merchant().principal_cap_fen
    seen: dict[int, int] = {}
    principals = _principals({m.id for m in (*by_card.values(), *by_phone.values())})
    kept = []
    for row in parsed.rows:
        card, phone = by_card.get(row.member_ref), by_phone.get(row.member_ref)
        if card and phone and card.id != phone.id:
            parsed.errors.append(
                RowError(row.row, "member_ambiguous", f"{row.member_ref} 同时是两位会员的卡号和手机号")
            )
            continue
        member = card or phone
        if member is None:
            parsed.errors.append(RowError(row.row, "member_not_found", f"找不到会员 {row.member_ref}"))
            continue
        if member.id in seen:
            parsed.errors.append(
                RowError(row.row, "duplicate_member", f"与第 {seen[member.id]} 行是同一会员，请合并为一行")
            )
            continue
        seen[member.id] = row.row
        if member.status != "active":
            parsed.errors.append(RowError(row.row, "member_frozen", "会员卡已冻结或挂失，不能充值"))
            continue
        principal = principals.get(member.id, 0)
        if principal + row.amount_fen > cap:
            parsed.errors.append(
                RowError(
                    row.row,
                    "balance_cap_exceeded",
                    f"充值后本金将超过单卡上限 {yuan(cap)} 元（当前本金 {yuan(principal)} 元）",
                )
            )
            continue
        row.member_id = member.id
        kept.append(row)
    parsed.rows = kept
    parsed.errors.sort(key=lambda e: e.row)


def _principals(member_ids: set[int]) -> dict[int, int]:
    from ..ledger.models import Wallet

    ids = sorted(member_ids)
    found: dict[int, int] = {}
    for start in range(0, len(ids), 500):
        rows = db.session.execute(
            select(Wallet.member_id, Wallet.principal_fen).where(Wallet.member_id.in_(ids[start : start + 500]))
        )
        found.update({member_id: int(p) for member_id, p in rows})
    return found


def _content_hash(rows: list[ParsedRow]) -> str:
    canonical = [[row.member_id, row.amount_fen, row.note] for row in rows]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------
# The service calls


def _batch_staff(staff_id: int, store_id: int | None) -> Staff:
    staff = org.require_permission(staff_id, "recharge_offline", store_id)
    if staff.role not in BATCH_ROLES:
        raise Forbidden("批量充值仅限总部管理员和区域经理", code="permission_denied")
    return staff


@dataclass(frozen=True)
class Uploaded:
    batch: RechargeBatch
    duplicate: bool
    encoding: str


@transactional
def upload(staff_id: int, filename: str, data: bytes, *, store_code: str | None = None, note: str = "") -> Uploaded:
    """Validate every row, then store the batch and enqueue the job (after commit). Nothing is stored
    when any row is wrong; the same rows again answer the first batch."""
    store_id = org.store_by_code(store_code).id if store_code else None
    staff = _batch_staff(staff_id, store_id)
    parsed = read_rows(filename, data)
    _resolve_members(parsed)
    if parsed.errors:
        raise BatchInvalid(
            f"文件中有 {len(parsed.errors)} 行错误，未做任何充值，请按行号修改后重新上传",
            details={
                "error_count": len(parsed.errors),
                "errors": [e.as_dict() for e in parsed.errors[:MAX_LISTED_ERRORS]],
            },
        )
    digest = _content_hash(parsed.rows)
    existing = db.session.scalars(select(RechargeBatch).where(RechargeBatch.content_sha256 == digest)).first()
    if existing is not None:
        return Uploaded(existing, True, parsed.encoding)
    batch = RechargeBatch(
        content_sha256=digest,
        filename=(filename or "")[-255:],
        staff_id=staff.id,
        store_id=store_id,
        status="pending",
        total=len(parsed.rows),
        total_fen=sum(row.amount_fen for row in parsed.rows),
        applied=0,
        failed=0,
        note=(note or "").strip()[:255],
        created_at=utcnow(),
    )
    try:
        with db.session.begin_nested():
            db.session.add(batch)
    except IntegrityError as error:  # the same rows, committed by a racing upload
        raise RetryTransaction() from error
    values = [
        {
            "batch_id": batch.id,
            "row_no": row.row,
            "member_id": row.member_id,
            "amount_fen": row.amount_fen,
            "note": row.note,
            "status": "pending",
            "error": "",
        }
        for row in parsed.rows
    ]
    for start in range(0, len(values), 1000):
        db.session.execute(insert(row_t), values[start : start + 1000])
    org.audit(staff.id, "recharge_batch", f"recharge_batch:{batch.id}", f"{batch.total} 行，{yuan(batch.total_fen)} 元")
    jobs.enqueue_after_commit(JOB, batch.id, job_id=f"recharge-batch-{batch.id}")
    return Uploaded(batch, False, parsed.encoding)


def apply_batch(batch_id: int) -> dict[str, Any]:
    """Apply every pending row, each in its own transaction. Safe to run again, or twice at once."""
    _mark(batch_id, "pending", "running")
    while True:
        pending = list(
            db.session.scalars(
                select(row_t.c.row_no)
                .where(row_t.c.batch_id == batch_id, row_t.c.status == "pending")
                .order_by(row_t.c.row_no)
                .limit(500)
            )
        )
        db.session.rollback()
        if not pending:
            break
        for row_no in pending:
            _apply_row(batch_id, row_no)
            if after_row_hook is not None:
                after_row_hook(batch_id, row_no)
    _mark(batch_id, "running", "done")
    db.session.rollback()
    return progress_of(batch_id)


@transactional
def _mark(batch_id: int, before: str, after: str) -> None:
    values: dict[str, Any] = {"status": after}
    if after == "done":
        values["finished_at"] = utcnow()
    db.session.execute(update(batch_t).where(batch_t.c.id == batch_id, batch_t.c.status == before).values(**values))


@transactional
def _apply_row(batch_id: int, row_no: int) -> None:
    row = db.session.execute(
        select(row_t).where(row_t.c.batch_id == batch_id, row_t.c.row_no == row_no).with_for_update()
    ).first()
    if row is None or row.status != "pending":
        return  # applied (or failed) by an earlier or concurrent run
    batch = db.session.execute(select(batch_t.c.staff_id, batch_t.c.store_id).where(batch_t.c.id == batch_id)).one()
    where = (row_t.c.batch_id == batch_id) & (row_t.c.row_no == row_no)
    try:
        member = db.session.get(Member, row.member_id)
        if member is None or member.status != "active":
            raise MemberFrozen("会员卡已冻结或挂失，不能充值")
        check_cap(row.member_id, row.amount_fen)
        posting = ledger.credit(
            row.member_id,
            row.amount_fen,
            key=f"batch:{batch_id}:{row_no}",
            operator=f"staff:{batch.staff_id}",
            store_id=batch.store_id,
            reference=f"batch:{batch_id}",
            note=row.note or "批量充值",
        )
    except AppError as error:  # changed since the upload (frozen, cap reached): this row fails, others go on
        db.session.execute(update(row_t).where(where).values(status="failed", error=error.message[:255]))
        db.session.execute(update(batch_t).where(batch_t.c.id == batch_id).values(failed=batch_t.c.failed + 1))
        return
    db.session.execute(update(row_t).where(where).values(status="applied", entry_id=posting.entry_id))
    db.session.execute(update(batch_t).where(batch_t.c.id == batch_id).values(applied=batch_t.c.applied + 1))
    notices.notify_after_commit(posting, title="批量充值")


def get_batch(staff_id: int, batch_id: int) -> RechargeBatch:
    batch = db.session.get(RechargeBatch, batch_id, populate_existing=True)
    if batch is None:
        raise BatchNotFound()
    staff = db.session.get(Staff, staff_id)
    if staff is None or staff.role not in BATCH_ROLES or not org.can_access_store(staff, batch.store_id):
        raise BatchNotFound()  # another region's batch is not theirs to see
    return batch


def progress_of(batch_id: int) -> dict[str, Any]:
    batch = db.session.get(RechargeBatch, batch_id, populate_existing=True)
    if batch is None:
        raise BatchNotFound()
    failed_rows = db.session.execute(
        select(row_t.c.row_no, row_t.c.member_id, row_t.c.amount_fen, row_t.c.error)
        .where(row_t.c.batch_id == batch_id, row_t.c.status == "failed")
        .order_by(row_t.c.row_no)
        .limit(MAX_LISTED_ERRORS)
    )
    applied_fen = db.session.scalar(
        select(func.coalesce(func.sum(row_t.c.amount_fen), 0)).where(
            row_t.c.batch_id == batch_id, row_t.c.status == "applied"
        )
    )
    return {
        "id": batch.id,
        "status": batch.status,
        "total": batch.total,
        "applied": batch.applied,
        "failed": batch.failed,
        "pending": batch.total - batch.applied - batch.failed,
        "total_fen": batch.total_fen,
        "applied_fen": int(applied_fen or 0),
        "filename": batch.filename,
        "store_id": batch.store_id,
        "note": batch.note,
        "errors": [
            {"row": r.row_no, "member_id": r.member_id, "amount_fen": r.amount_fen, "message": r.error}
            for r in failed_rows
        ],
        "created_at": batch.created_at.isoformat(),
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
    }
