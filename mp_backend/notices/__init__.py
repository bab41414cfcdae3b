"""Balance change notices: a WeChat template message after money moves, once per ledger entry."""
