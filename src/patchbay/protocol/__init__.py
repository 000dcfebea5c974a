"""JSON-RPC dispatch for both protocol eras: the 2025 handshake era and the 2026-07-28 stateless revision."""
