"""The library's one error type."""


class UserError(Exception):
    """A problem with the user's data or parameters, reported in one line without a traceback."""
