"""Console sessions that end before their token expires: a logged-out token's ``jti`` is kept until
the token would have expired anyway, and ``org.service.staff_from_token`` refuses it (one primary-key
lookup per console request)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ForeignKey, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import ExactString, utcnow
from ..transaction import transactional


class StaffTokenRevoked(db.Model):  # type: ignore[name-defined]
    __tablename__ = "staff_token_revoked"
    jti: Mapped[str] = mapped_column(ExactString(32), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


def new_jti() -> str:
    return secrets.token_hex(16)


def is_revoked(jti: object) -> bool:
    return isinstance(jti, str) and db.session.get(StaffTokenRevoked, jti) is not None


@transactional
def revoke(staff_id: int, jti: str) -> None:
    """Log one console token out (idempotent); expired revocations are pruned on the way."""
    now = utcnow()
    db.session.execute(delete(StaffTokenRevoked).where(StaffTokenRevoked.expires_at < now))
    if db.session.scalars(select(StaffTokenRevoked.jti).where(StaffTokenRevoked.jti == jti)).first() is None:
        max_age = int(current_app.config["STAFF_TOKEN_MAX_AGE"])
        db.session.add(StaffTokenRevoked(jti=jti, staff_id=staff_id, expires_at=now + timedelta(seconds=max_age)))
