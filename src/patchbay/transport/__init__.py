"""Transports: Streamable HTTP (both eras), legacy HTTP+SSE, stdio. They parse the wire and nothing more."""
