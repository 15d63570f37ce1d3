"""fingerd: a privilege-separated finger daemon (RFC 1288)."""

__version__ = "0.1.0"
