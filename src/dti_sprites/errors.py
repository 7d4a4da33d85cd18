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


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-blank line of an error's message (some have none), for one-line reports."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(err).__name__
