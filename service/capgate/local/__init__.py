"""Helpers that run real local dependencies (for ``capgate demo`` and the tests)."""
