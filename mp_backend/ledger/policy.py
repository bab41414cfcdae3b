"""How a spend is split across the two buckets, and how a refund gives it back.

Policies (``SPENDING_POLICY``):
- ``proportional`` (default): the bonus share of the spend is ``amount * bonus / (principal + bonus)``
  rounded to the nearest fen (half up), the rest comes from principal. Paid-in and gift money are used
  up at the same pace, small payments included (rounding down would let a member pay 9 fen a thousand
  times and never touch the bonus), which is what refund rules for prepaid cards expect.
- ``principal_first``: principal until it is gone, then bonus.
- ``bonus_first``: bonus until it is gone, then principal.

A refund restores the buckets in the proportion the payment took them (DESIGN.md section 3): a partial
refund never turns gift money into principal, which an offline withdrawal could pay out. The split is
computed on the running total (all refunds of the payment so far plus this one), so rounding never
drifts, and the refund that completes the payment restores the exact remainder of each bucket.
"""

from __future__ import annotations

POLICIES = ("proportional", "principal_first", "bonus_first")


def share_half_up(amount: int, part: int, whole: int) -> int:
    """``amount * part / whole`` rounded to the nearest integer, halves up (all arguments >= 0)."""
    return (2 * amount * part + whole) // (2 * whole) if whole else 0


def split_spend(amount_fen: int, principal_fen: int, bonus_fen: int, policy: str) -> tuple[int, int]:
    """Return (from_principal, from_bonus) for a spend the buckets can cover."""
    total = principal_fen + bonus_fen
    if amount_fen > total:
        raise ValueError("spend exceeds the buckets")
    if policy == "proportional":
        # Nearest fen never exceeds either bucket: amount <= total keeps each exact share within it.
        from_bonus = share_half_up(amount_fen, bonus_fen, total)
    elif policy == "principal_first":
        from_bonus = max(amount_fen - principal_fen, 0)
    elif policy == "bonus_first":
        from_bonus = min(amount_fen, bonus_fen)
    else:
        raise ValueError(f"unknown spending policy {policy!r}")
    return amount_fen - from_bonus, from_bonus


def split_refund(
    amount_fen: int,
    taken_principal_fen: int,
    taken_bonus_fen: int,
    refunded_principal_fen: int,
    refunded_bonus_fen: int,
) -> tuple[int, int]:
    """Return (to_principal, to_bonus) for a refund of a payment that took (principal, bonus) and has
    already given back (refunded_principal, refunded_bonus)."""
    left_principal = taken_principal_fen - refunded_principal_fen
    left_bonus = taken_bonus_fen - refunded_bonus_fen
    if amount_fen > left_principal + left_bonus:
        raise ValueError("refund exceeds what was taken")
    if amount_fen == left_principal + left_bonus:
        return left_principal, left_bonus
    taken = taken_principal_fen + taken_bonus_fen
    refunded_after = refunded_principal_fen + refunded_bonus_fen + amount_fen
    to_bonus = share_half_up(refunded_after, taken_bonus_fen, taken) - refunded_bonus_fen
    to_bonus = max(0, min(to_bonus, amount_fen, left_bonus))
    to_principal = amount_fen - to_bonus
    if to_principal > left_principal:
        to_principal = left_principal
        to_bonus = amount_fen - to_principal
    return to_principal, to_bonus
