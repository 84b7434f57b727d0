"""The library's one error type."""


class UserError(Exception):
    """A problem with the user's data or parameters, reported in one line without a traceback."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type if it has none), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0].rstrip(".") if text else type(err).__name__
