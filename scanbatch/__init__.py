"""scanbatch: read photos of vinyl records and match them against a station's library catalog."""

__version__ = "0.1.0"
