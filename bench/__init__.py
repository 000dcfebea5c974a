"""Patchbay benchmark harness (run with `python -m bench`; never collected as tests)."""
