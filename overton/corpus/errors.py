"""One exception type for mistakes a user can fix (bad path, bad config, bad input file).

The command line prints these as one line and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; its message is the whole explanation."""
