"""`first_line`: an exception in one line for the messages that name a file or a trial."""

from __future__ import annotations

from compress.errors import first_line


def test_the_first_line_of_a_long_message():
    assert first_line(ValueError("bad header\n  at byte 12\nsee the docs")) == "bad header"
    assert first_line(OSError("  padded  \nmore")) == "padded"


def test_an_empty_message_still_names_what_was_raised():
    assert first_line(RuntimeError()) == "RuntimeError"
    assert first_line(ValueError(" \n ")) == "ValueError"


def test_a_data_loader_workers_error_is_its_own_last_line():
    relayed = RuntimeError("Caught ValueError in DataLoader worker process 0.\n"
                           "Original Traceback (most recent call last):\n"
                           '  File "folders.py", line 40, in __getitem__\n'
                           "ValueError: cat.jpg: not an image")
    assert first_line(relayed) == "cat.jpg: not an image"
