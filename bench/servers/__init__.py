"""Benchmark peers: servers we run next to Patchbay under the same load (never imported by Patchbay)."""
