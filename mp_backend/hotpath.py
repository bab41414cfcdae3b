"""SQL for the few hot paths (a pay notification, an open-API charge, a balance notice claim) on the
transaction's own driver cursor, the way the ledger issues its statements (``ledger.service._Tx``: the
statement goes straight to the driver, an error comes back translated by SQLAlchemy exactly as if
SQLAlchemy had issued it, so ``IntegrityError``, deadlock retries and disconnects behave as before).

SQLAlchemy's per-statement execution through the session costs more CPU than the database's own work
for these short statements (``shared/PERF.md``). A statement here is written once with ``?`` marks and
rendered once per driver parameter style; ``FOR UPDATE`` is left out on SQLite, whose transactions
begin IMMEDIATE instead. Use the ORM everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .ledger.service import _Tx as Tx

__all__ = ["Sql", "Tx", "cursor"]


class Sql:
    """One statement with ``?`` marks, rendered for the current driver on first use."""

    __slots__ = ("text", "_rendered")

    def __init__(self, text: str) -> None:
        if "%" in text:  # the format paramstyle would read it as a placeholder
            raise ValueError("no % in hot-path SQL")
        self.text = text
        self._rendered: dict[tuple[str, str], str] = {}

    def render(self, tx: Tx) -> str:
        dialect = tx.conn.dialect
        key = (dialect.name, dialect.paramstyle)
        rendered = self._rendered.get(key)
        if rendered is None:
            text = self.text.replace(" FOR UPDATE", "") if dialect.name == "sqlite" else self.text
            rendered = self._rendered[key] = text if dialect.paramstyle == "qmark" else text.replace("?", "%s")
        return rendered

    def run(self, tx: Tx, params: Sequence[Any] = ()) -> Any:
        """Execute on ``tx``'s cursor; returns the cursor (``rowcount``, ``lastrowid``, fetches)."""
        return tx.run(self.render(tx), tuple(params))

    def one(self, tx: Tx, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return tx.one(self.render(tx), tuple(params))


def cursor() -> Tx:
    """The current session transaction's driver cursor (the transaction begins if need be), one per
    transaction."""
    return Tx.current()
