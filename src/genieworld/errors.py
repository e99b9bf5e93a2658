"""Exception types shared across the package.

Every *expected* failure -- bad user input, a damaged or hostile file, a refused setting -- is a
:class:`UserError` (the config, model-directory, checkpoint, run and store errors all subclass it),
so the ``genie`` command line prints it as one line and exits 2 (see :mod:`genieworld.cli`).
Anything else reaching the command line is a bug: one short line, and the traceback with ``--debug``.
"""


class UserError(Exception):
    """An error caused by the user's input; the CLI prints it as one line, without a traceback."""


class DiskFullError(UserError):
    """The file system ran out of space while genieworld wrote something (nothing earlier was lost)."""
