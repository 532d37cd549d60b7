"""Errors a user can cause.

Anything raised as `UserError` ends the CLI with one line on stderr and exit code 2;
every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a missing file, a wrong key, an unreadable image."""


class StageFailed(Exception):
    """A stage ran but its result failed a check (e.g. export parity); exit code 1."""


def first_line(exc: BaseException) -> str:
    """An exception in one line, for a message that names a file or a trial: libraries
    (protobuf, ONNX Runtime, OpenVINO) put pages of detail after their first line, a
    DataLoader worker's error arrives as its whole traceback, and an empty message still
    says what was raised."""
    message = str(exc).strip()
    if "Original Traceback" in message:  # re-raised from a DataLoader worker
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return message.splitlines()[0].strip() if message else type(exc).__name__
