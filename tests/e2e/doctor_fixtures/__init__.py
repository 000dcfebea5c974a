"""Small MCP servers for the doctor's tests: ``base.Server`` passes every check; each server in ``broken`` breaks
exactly one thing."""
