"""Errors a user can cause.

Anything raised as `UserError` ends the CLI with one line on stderr and exit code 2;
every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a missing file, a wrong key, an unreadable image."""


class StageFailed(Exception):
    """A stage ran but its result failed a check (e.g. export parity); exit code 1."""
