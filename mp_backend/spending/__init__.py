"""Spending: members paying orders with balance (and WeChat Pay for the rest), the pay password, payment
codes, the till's charges and holds, refunds."""
