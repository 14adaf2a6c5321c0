"""The one error type that reaches users as a one-line message instead of a traceback."""


class EdgesegError(Exception):
    """A problem with the user's input (a file, a flag, a dataset) that edgeseg can name.

    The CLI prints ``error: <message>`` and exits with status 1; the API raises it as is.
    Messages name the file and the problem on one line.
    """


# The helpers that word its messages.

QUOTE_CHARS = 80  # characters of a user's value quoted in an error message


def quoted(value, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters (ending in ``...``), for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_repr(value, limit: int = 40) -> str:
    """A value from an untrusted file, for an error message: a string's repr cut to ``limit``
    characters (ending in ``…``), else only its type name (an object's own repr never runs)."""
    if isinstance(value, str):
        return repr(value[:limit] + ("…" if len(value) > limit else ""))
    return type(value).__name__


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, stripped; its type name when there is none."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def is_int(value) -> bool:
    """True for an int that is not a bool (JSON and YAML integers, never ``True``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def os_reason(exc: BaseException) -> str:
    """Why a file operation failed, in one line: the OS's message (``strerror``, e.g. ``Permission denied``) or the exception's."""
    return getattr(exc, "strerror", None) or first_line(exc)
