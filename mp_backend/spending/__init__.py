"""Spending: payments, holds, refunds, pay password, payment codes."""
