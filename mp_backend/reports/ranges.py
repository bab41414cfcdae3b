"""Time ranges of the console's filters: dates in the merchant's zone or ISO times, bounded."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from ..errors import AppError, ValidationFailed
from .summary import MERCHANT_UTC_OFFSET, day_start_utc

MAX_RANGE_DAYS = 366
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100


class InvalidRange(AppError):
    status, code, message = 422, "invalid_range", "时间范围无效"


def parse_moment(value: str | datetime | date | None, *, end: bool = False) -> datetime | None:
    """A filter bound as naive UTC. ``YYYY-MM-DD`` is a day in the merchant's zone: as ``from`` its
    start, as ``to`` the start of the next day (so ``to`` includes the whole day). An ISO time without
    an offset is the merchant's local time."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        text = value.strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                _check_year(day.year)
                return day_start_utc(day + timedelta(days=1) if end else day)
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed(f"时间格式应为 YYYY-MM-DD 或 ISO 8601：{text[:40]}", code="invalid_date") from None
    _check_year(moment.year)
    if moment.tzinfo is None:
        if isinstance(value, str) and len(value.strip()) > 10:
            return moment - MERCHANT_UTC_OFFSET
        return moment if isinstance(value, datetime) else day_start_utc(moment.date())
    return moment.astimezone(UTC).replace(tzinfo=None)


def _check_year(year: int) -> None:
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise InvalidRange(f"日期须在 {EARLIEST_YEAR}-{LATEST_YEAR} 年之间")


def check_range(start: datetime | None, end: datetime | None, *, max_days: int = MAX_RANGE_DAYS) -> None:
    """A bound outside 2000-2100, ``from`` after ``to``, or a range longer than ``max_days`` days:
    422 ``invalid_range`` (a one-sided range is checked too)."""
    for bound in (start, end):
        if bound is not None:
            _check_year(bound.year)
    if start is not None and end is not None:
        if start > end:
            raise InvalidRange("开始时间不能晚于结束时间")
        if end - start > timedelta(days=max_days):
            raise InvalidRange(f"时间范围不能超过 {max_days} 天")


def parse_range(
    start: str | None, end: str | None, *, max_days: int = MAX_RANGE_DAYS
) -> tuple[datetime | None, datetime | None]:
    lower, upper = parse_moment(start), parse_moment(end, end=True)
    check_range(lower, upper, max_days=max_days)
    return lower, upper


def iso_local(moment: datetime) -> str:
    """A stored (naive UTC) time in ISO 8601 with the merchant's offset."""
    return (moment + MERCHANT_UTC_OFFSET).replace(microsecond=0).isoformat() + "+08:00"
