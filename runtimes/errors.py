"""The one error type that reaches users as a one-line message instead of a traceback."""


class EdgesegError(Exception):
    """A problem with the user's input (a file, a flag, a dataset) that edgeseg can name.

    The CLI prints ``error: <message>`` and exits with status 1; the API raises it as is.
    Messages name the file and the problem on one line.
    """
