"""Two exception types the command line prints as one line, ``overton: error: ...``.

``UserError`` is a mistake the user can fix (bad path, bad config, bad input file): exit 2.
``Refused`` is a job that ran and refused to go on (a damaged file it was about to trust): exit 1.
Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; its message is the whole explanation."""


class Refused(Exception):
    """The job ran and stopped rather than carry damage forward; its message names the file and the way out."""
