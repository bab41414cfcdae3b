"""Open-API clients, the nonces they have used, and the answers kept for their idempotency keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models_base import BigId, ExactString, created_at_column


class OpenClient(db.Model):  # type: ignore[name-defined]
    """A till or shop system. ``client_id`` is public; the secret is kept encrypted (``clients.service``),
    never in plain text, so a database dump alone signs nothing."""

    __tablename__ = "open_client"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(ExactString(40), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    # A client created for one store may act in that store only (None: every store of the merchant).
    store_id: Mapped[int | None] = mapped_column(ForeignKey("store.id"), index=True)
    secret_ciphertext: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True, server_default=text("1"))
    # When it was last deactivated (``flask clients deactivate``; who and why are in audit_log).
    deactivated_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = created_at_column()


class OpenNonce(db.Model):  # type: ignore[name-defined]
    """Nonces seen within the timestamp window, when there is no Redis (with Redis: SET NX with a TTL)."""

    __tablename__ = "open_nonce"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("open_client.id"))
    nonce: Mapped[str] = mapped_column(ExactString(64))
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        UniqueConstraint("client_id", "nonce", name="uq_open_nonce_client_nonce"),
        Index("ix_open_nonce_created_at", "created_at"),
    )


class OpenRequest(db.Model):  # type: ignore[name-defined]
    """The answer given to a client's ``Idempotency-Key``: a retry with the same body gets it again,
    a different body with the same key is refused (``idempotency_conflict``)."""

    __tablename__ = "open_request"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("open_client.id"))
    idempotency_key: Mapped[str] = mapped_column(ExactString(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column()
    response_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key", name="uq_open_request_client_key"),
        CheckConstraint("status_code BETWEEN 200 AND 299", name="status_code_success"),
    )
