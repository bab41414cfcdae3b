"""API clients of the open API (the merchant's till and shop systems): credentials, request signing,
nonces and idempotent replays."""
