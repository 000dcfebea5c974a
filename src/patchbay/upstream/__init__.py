"""Other MCP servers behind Patchbay: the client side (sessions, transports, pooling) and stdio supervision."""
