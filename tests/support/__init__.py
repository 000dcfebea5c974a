"""Helpers shared by the e2e and conformance tests: real Patchbay processes and the pinned Node tooling.

Plain functions and context managers with no pytest dependency, so they also work from a REPL or a script.
"""
