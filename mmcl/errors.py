"""The errors mmcl expects: bad input, a bad config, a missing or corrupt file.

Every such error derives from :class:`MmclError` and says in its message what is wrong (the file, sample or config
key) and, where there is one, the fix. The ``mmcl`` command prints it on one line and exits with status 2; anything
else is a bug and keeps its traceback. ``--debug`` (or ``MMCL_DEBUG=1``) shows the traceback of expected errors too.

Most classes also derive from the built-in type that callers of the library would catch (``ValueError`` for bad
values, ``RuntimeError`` for a broken file), so code written against those keeps working.
"""

from __future__ import annotations


class MmclError(Exception):
    """An expected error, reported on one line by the command line."""


class ConfigError(MmclError, ValueError):
    """A configuration file or override is invalid; the message names the file (or the command line) and the key."""


class DataError(MmclError, ValueError):
    """A dataset, sample or input file cannot be used; the message names it."""


class CheckpointError(MmclError, ValueError):
    """A checkpoint is missing, corrupt, or does not fit the model or data it is used with."""
