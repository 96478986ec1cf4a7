"""Errors the learning package raises for bad input; the CLI prints them as one line."""


class LearningError(Exception):
    """A user-facing error: bad arguments, malformed data, missing files. Never a bug."""
