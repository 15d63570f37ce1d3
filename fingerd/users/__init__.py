"""The users file and the user table: format, store, reloads, the setter's request."""
