"""The errors a user can cause and fix. The command line turns exactly these into one ``error:`` (or ``refused:``)
line; anything else is a bug in mudjacking and keeps its traceback.

Each also derives from ``ValueError``, so callers that caught bad values before keep working."""

from __future__ import annotations


class MudjackingError(Exception):
    """Bad input, a bad option or an unusable output; the one-line message names the file or option and the fix."""


class DataError(MudjackingError, ValueError):
    """A data file that cannot be used; the one-line message names the file and the fix."""


class ModelLoadError(MudjackingError, ValueError):
    """A model path that cannot be loaded; the message names the path and the fix."""


class OutputError(MudjackingError, ValueError):
    """An output location that cannot be written; the message names it and the fix."""


class ConfigError(MudjackingError, ValueError):
    """An option or configuration value that cannot be used; the message names it and what it accepts."""


class CheckFailed(MudjackingError, ValueError):
    """A self-check failed: going on would report a result that means nothing. The message gives the figures and
    how to override."""


class TriggerNotFound(CheckFailed):
    """No candidate trigger drags clean inputs toward ``h(x_b)``: there is nothing verified to patch against."""
