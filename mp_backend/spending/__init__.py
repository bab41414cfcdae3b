"""Spending: members paying orders with balance (and WeChat Pay for the rest), the pay password, refunds."""
