"""Verity's benchmarks: `make bench` (or `.venv/bin/python -m bench [--quick]`).

Modules per area: `serving` (the embedded server against gunicorn, and signaling connects) and
`audit_chain` (verifying and appending to the audit hash chain). `common` holds the shared
plumbing; `__main__` runs everything, prints one table and writes bench/results/latest.json.
See docs/performance.md for what each figure means.
"""
