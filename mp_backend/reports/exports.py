"""Excel exports of the console's record lists, written by an RQ job with progress.

``start_export`` checks the filter the way the list does (scope, store out of scope, time range),
counts the rows up to the staff member's limit (more: 422 ``export_too_large``), records the job and
enqueues it after commit (in process without Redis). ``run_export`` reads the rows in keyset chunks
(``id < last ORDER BY id DESC LIMIT n``: each chunk an index range, no OFFSET, no cursor held open
between chunks), appends them to an openpyxl write-only workbook (rows go to a temporary file as they
come), records the progress after each chunk, and renames the finished file into ``EXPORT_DIR``.
Memory stays flat whatever the row count. Text cells starting with ``= + - @`` (or a tab / CR) are
written with a leading apostrophe, so a spreadsheet never takes a member's name for a formula.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import current_app
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy import Select, select, update

from ..config import INSTANCE
from ..errors import AppError, NotFound
from ..extensions import db, jobs
from ..ledger.models import LedgerEntry
from ..members.models import Member
from ..models_base import utcnow
from ..org.models import Staff, Store
from ..recharge import service as recharge
from ..recharge.batch import FORMULA_PREFIXES
from ..recharge.models import RechargeOrder
from ..records import service as records
from ..records.words import china_time, kind_words
from ..transaction import transactional
from . import lists
from .models import EXPORT_KINDS, ExportJob
from .ranges import check_range, parse_moment
from .scope import viewer

log = logging.getLogger(__name__)

CHUNK_ROWS = 2_000
export_t = ExportJob.__table__
order_t = RechargeOrder.__table__


class ExportTooLarge(AppError):
    status, code = 422, "export_too_large"


def export_dir() -> Path:
    path = Path(current_app.config.get("EXPORT_DIR") or INSTANCE / "exports")
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_rows(staff: Staff) -> int:
    name = "EXPORT_MAX_ROWS_CLERK" if staff.role == "clerk" else "EXPORT_MAX_ROWS"
    return int(current_app.config.get(name) or (100_000 if staff.role == "clerk" else 1_000_000))


def yuan_number(fen: int | None) -> Decimal | None:
    """Yuan as an exact number cell (two decimals), for sums in the spreadsheet."""
    return None if fen is None else Decimal(int(fen)).scaleb(-2)


def safe_cell(value: Any) -> Any:
    """Text that a spreadsheet would read as a formula gets a leading apostrophe; characters a
    spreadsheet (XML) cannot hold (control characters from a WeChat nickname, say) become U+FFFD, so
    one odd name never fails a whole export."""
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
        if value.startswith(FORMULA_PREFIXES):
            return "'" + value
    return value


# ---------------------------------------------------------------------------------------------------
# What each kind selects: a base query, its key column (newest first), a header and a row writer


@dataclass
class Source:
    query: Select[Any]
    key: Any
    header: list[str]
    row: Callable[[Any], list[Any]]
    prepare: Callable[[list[Any]], Any] | None = None  # per chunk: e.g. points of the chunk's members


def _dt(value: str | None) -> datetime | None:
    return parse_moment(value) if value else None


def sources(kind: str, staff: Staff, filters: dict[str, Any]) -> list[Source]:
    if kind == "ledger":
        f = records.EntryFilter(
            store_code=filters.get("store"),
            operator=filters.get("operator"),
            kind=filters.get("kind"),
            created_from=_dt(filters.get("created_from")),
            created_to=_dt(filters.get("created_to")),
            reference=filters.get("reference"),
            member_id=filters.get("member_id"),
            member=filters.get("member"),
        )
        check_range(f.created_from, f.created_to)
        query = (
            select(*records.ENTRY_COLUMNS)
            .outerjoin(Store, Store.id == LedgerEntry.store_id)
            .where(*records.entry_conditions(staff, f))
        )
        header = [
            "流水号",
            "时间",
            "会员ID",
            "类型",
            "金额（元）",
            "本金变动（元）",
            "赠送变动（元）",
            "冻结变动（元）",
            "本金余额（元）",
            "赠送余额（元）",
            "门店",
            "操作员",
            "单号",
            "备注",
        ]

        def ledger_row(r: Any) -> list[Any]:
            return [
                r.id,
                china_time(r.created_at),
                r.member_id,
                kind_words(r.kind, r.principal_delta_fen, r.bonus_delta_fen),
                yuan_number(r.amount_fen),
                yuan_number(r.principal_delta_fen),
                yuan_number(r.bonus_delta_fen),
                yuan_number(r.held_delta_fen),
                yuan_number(r.principal_after_fen),
                yuan_number(r.bonus_after_fen),
                r.store_name or "线上",
                r.operator,
                r.reference,
                r.note,
            ]

        return [Source(query, LedgerEntry.id, header, ledger_row)]
    if kind == "recharge_orders":
        of = recharge.OrderFilter(
            rule_id=filters.get("rule_id"),
            store_code=filters.get("store"),
            src=filters.get("src"),
            status=filters.get("status"),
            out_trade_no=filters.get("out_trade_no"),
            created_from=_dt(filters.get("created_from")),
            created_to=_dt(filters.get("created_to")),
            paid_from=_dt(filters.get("paid_from")),
            paid_to=_dt(filters.get("paid_to")),
        )
        check_range(of.created_from, of.created_to)
        check_range(of.paid_from, of.paid_to)
        query = (
            select(order_t, Store.name.label("store_name"))
            .outerjoin(Store, Store.id == order_t.c.store_id)
            .where(*recharge._order_conditions(staff, of))
        )
        header = [
            "订单号",
            "下单时间",
            "支付时间",
            "状态",
            "会员ID",
            "金额（元）",
            "赠送（元）",
            "积分",
            "规则ID",
            "来源",
            "门店",
            "微信支付单号",
        ]

        def order_row(r: Any) -> list[Any]:
            return [
                r.out_trade_no,
                china_time(r.created_at),
                china_time(r.paid_at) if r.paid_at else None,
                r.status,
                r.member_id,
                yuan_number(r.amount_fen),
                yuan_number(r.bonus_fen),
                r.points,
                r.rule_id,
                r.src,
                r.store_name or "线上",
                r.transaction_id,
            ]

        return [Source(query, order_t.c.id, header, order_row)]
    if kind == "payments":
        pf = lists.PaymentFilter(
            store_code=filters.get("store"),
            status=filters.get("status"),
            order_no=filters.get("order_no"),
            member=filters.get("member"),
            member_id=filters.get("member_id"),
            created_from=_dt(filters.get("from")),
            created_to=parse_moment(filters.get("to"), end=True) if filters.get("to") else None,
            source=filters.get("source"),
        )
        check_range(pf.created_from, pf.created_to)
        header = [
            "来源",
            "ID",
            "订单号",
            "时间",
            "状态",
            "会员ID",
            "门店ID",
            "金额（元）",
            "余额支付（元）",
            "微信支付（元）",
            "已退（元）",
        ]

        def payment_row(r: Any) -> list[Any]:
            return [
                "会员余额支付" if r.source == "order" else "收银台扣款",
                r.id,
                r.order_no,
                china_time(r.created_at),
                r.status,
                r.member_id,
                r.store_id,
                yuan_number(r.amount_fen),
                yuan_number(r.balance_fen),
                yuan_number(r.wechat_fen),
                yuan_number(r.refunded_fen),
            ]

        return [Source(query, table.c.id, header, payment_row) for table, query in lists.payment_branches(staff, pf)]
    if kind == "members":
        query = lists.members_query(filters.get("q"))
        mask = lists.masks_phones(staff)
        header = [
            "会员ID",
            "卡号",
            "姓名",
            "手机号",
            "状态",
            "等级",
            "本金（元）",
            "赠送（元）",
            "冻结（元）",
            "积分",
            "注册时间",
        ]
        points: dict[int, int] = {}

        def prepare(rows: list[Any]) -> None:
            points.clear()
            points.update(lists.points_of([r.id for r in rows]))

        def member_row(r: Any) -> list[Any]:
            phone = lists.mask_phone(r.phone) if mask else r.phone
            return [
                r.id,
                r.card_no,
                r.name,
                phone,
                r.status,
                r.level or "普通会员",
                yuan_number(r.principal_fen or 0),
                yuan_number(r.bonus_fen or 0),
                yuan_number(r.held_fen or 0),
                points.get(r.id, 0),
                china_time(r.created_at),
            ]

        return [Source(query, Member.id, header, member_row, prepare)]
    raise AppError(f"导出类型须是 {', '.join(EXPORT_KINDS)} 之一", code="invalid_export_kind")


def _plain(filters: dict[str, Any]) -> dict[str, Any]:
    """JSON-storable filters (times as ISO strings), without paging."""
    out = {}
    for name, value in filters.items():
        if name in ("page", "per_page") or value is None or value == "":
            continue
        out[name.rstrip("_")] = value.isoformat() if isinstance(value, datetime) else value  # from_ -> from
    return out


# ---------------------------------------------------------------------------------------------------
# Starting, reading, running


@transactional
def start_export(staff_id: int, kind: str, filters: dict[str, Any]) -> ExportJob:
    staff = viewer(staff_id)
    plain = _plain(filters)
    limit = max_rows(staff)
    total = sum(records.count_capped(s.query.with_only_columns(s.key), limit) for s in sources(kind, staff, plain))
    if total > limit:
        raise ExportTooLarge(
            f"导出行数超过上限 {limit:,} 行，请缩小时间范围或增加筛选条件", details={"max_rows": limit}
        )
    job = ExportJob(staff_id=staff.id, kind=kind, filters=plain, status="queued", rows_total=total, rows_done=0)
    db.session.add(job)
    db.session.flush()
    jobs.enqueue_after_commit("jobs.reports.run_export", job.id, job_id=f"export-{job.id}")
    return job


def get_export(staff_id: int, export_id: int) -> ExportJob:
    """The staff member's own export, or any for HQ; anything else is 404 (ids leak nothing)."""
    staff = viewer(staff_id)
    job = db.session.get(ExportJob, export_id, populate_existing=True)
    if job is None or (staff.role != "hq_admin" and job.staff_id != staff.id):
        raise NotFound("导出任务不存在", code="export_not_found")
    return job


def file_of(staff_id: int, export_id: int) -> tuple[Path, str]:
    job = get_export(staff_id, export_id)
    if job.status != "done" or not job.file_name:
        raise AppError("导出尚未完成", code="export_not_ready", status=409)
    path = export_dir() / job.file_name
    if not path.is_file():
        raise NotFound("导出文件已被清理，请重新导出", code="export_file_missing")
    return path, f"{job.kind}-{job.created_at:%Y%m%d-%H%M%S}.xlsx"


def export_dict(job: ExportJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "filters": job.filters,
        "status": job.status,
        "rows_done": job.rows_done,
        "rows_total": job.rows_total,
        "error": job.error or None,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "download_url": f"/admin/api/exports/{job.id}/file" if job.status == "done" else None,
    }


def _chunks(source: Source) -> Iterator[list[Any]]:
    last: Any = None
    while True:
        query = source.query.order_by(source.key.desc()).limit(CHUNK_ROWS)
        if last is not None:
            query = query.where(source.key < last)
        rows = db.session.execute(query).all()
        db.session.rollback()  # no transaction (on SQLite: no lock) held between chunks
        if not rows:
            return
        yield rows
        last = rows[-1].id
        if len(rows) < CHUNK_ROWS:
            return


def run_export(export_id: int) -> dict[str, Any]:
    """Write the file; a run after a crash starts over (the file is renamed into place only when done)."""
    job = db.session.get(ExportJob, export_id)
    if job is None or job.status == "done":
        return {"id": export_id, "status": job.status if job else "missing"}
    staff_id, kind, filters = job.staff_id, job.kind, dict(job.filters)
    _set(export_id, status="running", rows_done=0, error="")
    directory = export_dir()
    name = f"export-{export_id}-{secrets.token_hex(8)}.xlsx"
    partial = directory / (name + ".part")
    done = 0
    try:
        staff = viewer(staff_id)
        book = Workbook(write_only=True)
        sheet = book.create_sheet(title=kind)
        for n, source in enumerate(sources(kind, staff, filters)):
            if n == 0:
                sheet.append(source.header)
            for rows in _chunks(source):
                if source.prepare:
                    source.prepare(rows)
                for row in rows:
                    sheet.append([safe_cell(v) for v in source.row(row)])
                done += len(rows)
                _set(export_id, rows_done=done)
        book.save(partial)
        partial.replace(directory / name)
    except Exception as error:
        db.session.rollback()
        partial.unlink(missing_ok=True)
        message = error.message if isinstance(error, AppError) else "导出失败，请稍后重试"
        _set(export_id, status="failed", error=message[:255], finished_at=utcnow())
        log.exception("export %s failed", export_id)
        return {"id": export_id, "status": "failed"}
    _set(export_id, status="done", rows_done=done, file_name=name, finished_at=utcnow())
    return {"id": export_id, "status": "done", "rows": done}


@transactional
def _set(export_id: int, **values: Any) -> None:
    db.session.execute(update(export_t).where(export_t.c.id == export_id).values(**values))
