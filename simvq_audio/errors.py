"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class SimVQError(Exception):
    """Base class of errors caused by input (files, tokens, configs), not by bugs."""


class AudioError(SimVQError):
    """Audio that cannot be read or used; the message names the file."""


class TokenFileError(SimVQError):
    """A token file that is missing, truncated, corrupt or from another model."""
