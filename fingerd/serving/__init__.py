"""The serving loop and what plugs into it: handlers, pool, framing, endpoints."""
