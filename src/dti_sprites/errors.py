"""Errors a user can act on.

The CLI prints these as one line (no traceback unless --debug), so each message must name
the key, file or value at fault and say what was expected.
"""


class DTISpritesError(Exception):
    """Base class of every error the CLI reports in one line."""


class ConfigError(DTISpritesError, ValueError):
    """A config key is unknown, has the wrong type or an impossible value."""


class DataError(DTISpritesError):
    """A dataset folder or file is missing, unreadable or not in the expected format."""


class CheckpointError(DTISpritesError):
    """A checkpoint is missing, unsafe or does not match the config."""
