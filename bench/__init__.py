"""Benchmarks, run as modules: ``python -m bench.ledger`` (see bench/README.md)."""
