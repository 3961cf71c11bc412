"""migrate: move an on-prem catalog and listener logs into Google Cloud, and prove it."""

__version__ = "0.1.0"
