"""The two ways sesyn-sync fails: a bad flag or input (exit 2) and a refusal (exit 3)."""

from __future__ import annotations


class BadInput(ValueError):
    """A flag or input that cannot be used; the message names it."""


class CannotSync(ValueError):
    """A recording or pair that gives no trustworthy offset; the message says why."""
