"""Report summaries kept by a job, and export jobs.

The summaries (``report_total``, ``report_store_total``, ``report_daily``, ``report_member``,
``report_store_member``) are derived data: ``reports.summary.catch_up`` folds ledger and points rows
above the watermark into them, and moves the watermark in the same transaction as the sums. Nothing
else writes them; a report reads them plus the few ledger rows above the watermark (the live tail).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..members.models import Member
from ..models_base import BigId, created_at_column
from ..org.models import AuditLog

# The sums kept per store and per (day, store). store_id 0 is "no store" (online recharges, the open
# API without a store): only HQ sees it.
FLOW_COLUMNS = (
    "recharge_fen",  # principal credited (WeChat Pay, counter, batch ...)
    "recharge_count",
    "bonus_fen",  # bonus credited (recharge gifts, points exchange)
    "consumption_fen",  # debits and captures of payments
    "consumption_count",
    "refund_fen",  # payments refunded to the balance
    "refund_count",
    "withdrawal_fen",  # principal handed back offline
    "reversal_fen",  # mistaken credits reversed
    "recharge_refund_fen",  # recharges refunded through WeChat Pay (the captured hold)
    "principal_delta_fen",
    "bonus_delta_fen",
    "held_delta_fen",
    "new_recharge_members",  # members whose first recharge in this store fell here
)


def _sum_column():  # type: ignore[no-untyped-def]
    return mapped_column(BigId, default=0, server_default=text("0"))


class _Flows:
    recharge_fen: Mapped[int] = _sum_column()
    recharge_count: Mapped[int] = _sum_column()
    bonus_fen: Mapped[int] = _sum_column()
    consumption_fen: Mapped[int] = _sum_column()
    consumption_count: Mapped[int] = _sum_column()
    refund_fen: Mapped[int] = _sum_column()
    refund_count: Mapped[int] = _sum_column()
    withdrawal_fen: Mapped[int] = _sum_column()
    reversal_fen: Mapped[int] = _sum_column()
    recharge_refund_fen: Mapped[int] = _sum_column()
    principal_delta_fen: Mapped[int] = _sum_column()
    bonus_delta_fen: Mapped[int] = _sum_column()
    held_delta_fen: Mapped[int] = _sum_column()
    new_recharge_members: Mapped[int] = _sum_column()


class ReportTotal(db.Model):  # type: ignore[name-defined]
    """One row (id 1): the watermarks and the merchant-wide counters. The job locks it, so two runs
    of the job take turns, and moves the watermarks in the same transaction as the sums."""

    __tablename__ = "report_total"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    ledger_last_id: Mapped[int] = _sum_column()
    points_last_id: Mapped[int] = _sum_column()
    recharge_members: Mapped[int] = _sum_column()  # distinct members who ever recharged
    members_with_balance: Mapped[int] = _sum_column()  # principal + bonus + held > 0
    points_outstanding: Mapped[int] = _sum_column()  # sum of points entries' deltas
    updated_at: Mapped[datetime] = created_at_column()
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class ReportStoreTotal(_Flows, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "report_store_total"
    store_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class ReportDaily(_Flows, db.Model):  # type: ignore[name-defined,misc]
    """Per merchant-local day (Asia/Shanghai) and store."""

    __tablename__ = "report_daily"
    day: Mapped[date] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class ReportMember(db.Model):  # type: ignore[name-defined]
    """What the merchant-wide counters know of one member, as of the watermark."""

    __tablename__ = "report_member"
    member_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    recharged: Mapped[bool] = mapped_column(default=False)
    has_balance: Mapped[bool] = mapped_column(default=False)


class ReportStoreMember(db.Model):  # type: ignore[name-defined]
    """A member who recharged in a store (for the store's distinct recharge members)."""

    __tablename__ = "report_store_member"
    store_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    member_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


EXPORT_KINDS = ("ledger", "recharge_orders", "payments", "members")
EXPORT_STATUSES = ("queued", "running", "done", "failed")


class ExportJob(db.Model):  # type: ignore[name-defined]
    __tablename__ = "export_job"
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    filters: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    rows_total: Mapped[int] = mapped_column(BigId, default=0)
    rows_done: Mapped[int] = mapped_column(BigId, default=0)
    file_name: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        CheckConstraint("kind IN ('ledger', 'recharge_orders', 'payments', 'members')", name="kind_known"),
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status_known"),
        CheckConstraint("rows_done >= 0 AND rows_total >= 0", name="rows_non_negative"),
    )


# Indexes the console's searches need on tables of other domains (declared here, created by this
# package's migration): member names by prefix, the audit log by time and by action.
Index("ix_member_name", Member.name)
Index("ix_audit_log_created_at", AuditLog.created_at)
Index("ix_audit_log_action_created_at", AuditLog.action, AuditLog.created_at)
