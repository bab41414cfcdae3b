"""How a spend is split across the two buckets, and how a refund gives it back.

Policies (``SPENDING_POLICY``):
- ``proportional`` (default): the bonus share of the spend is ``amount * bonus // (principal + bonus)``,
  rounded down, the rest comes from principal. Paid-in and gift money are used up at the same pace,
  which is what refund rules for prepaid cards expect.
- ``principal_first``: principal until it is gone, then bonus.
- ``bonus_first``: bonus until it is gone, then principal.

A refund restores exactly the buckets the payment took, principal first: a partial refund gives back
paid-in money before gift money, so what the member keeps is the part the gift paid for.
"""

from __future__ import annotations

POLICIES = ("proportional", "principal_first", "bonus_first")


def split_spend(amount_fen: int, principal_fen: int, bonus_fen: int, policy: str) -> tuple[int, int]:
    """Return (from_principal, from_bonus) for a spend the buckets can cover."""
    total = principal_fen + bonus_fen
    if amount_fen > total:
        raise ValueError("spend exceeds the buckets")
    if policy == "proportional":
        from_bonus = amount_fen * bonus_fen // total if total else 0
    elif policy == "principal_first":
        from_bonus = max(amount_fen - principal_fen, 0)
    elif policy == "bonus_first":
        from_bonus = min(amount_fen, bonus_fen)
    else:
        raise ValueError(f"unknown spending policy {policy!r}")
    return amount_fen - from_bonus, from_bonus


def split_refund(amount_fen: int, refundable_principal_fen: int, refundable_bonus_fen: int) -> tuple[int, int]:
    """Return (to_principal, to_bonus): principal first, never more than each bucket gave."""
    if amount_fen > refundable_principal_fen + refundable_bonus_fen:
        raise ValueError("refund exceeds what was taken")
    to_principal = min(amount_fen, refundable_principal_fen)
    return to_principal, amount_fen - to_principal
