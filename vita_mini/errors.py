"""One exception type for every problem a user can cause.

Command-line entry points catch :class:`VitaError` and print its message as a single line
(``error: <message>``) instead of a traceback. Messages name the file or argument at fault and
say what is wrong with it.
"""


class VitaError(Exception):
    """A user-facing error: bad input file, bad argument, incompatible checkpoint, ..."""
