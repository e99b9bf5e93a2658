"""Exception types shared across the package."""


class UserError(Exception):
    """An error caused by the user's input; the CLI prints it as one line, without a traceback."""
