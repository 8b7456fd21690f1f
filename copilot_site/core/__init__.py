"""Helpers shared by every app (errors, the error table, caching, admin bases, auth, parsers, SQL).

This package imports no app (``chat``, ``billing``, ``ratelimits``), so each of them may import it
without breaking the one-way dependency rule.
"""
