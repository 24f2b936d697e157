"""Error types the engine raises for problems a user can fix.

Every user-facing entry point (the `cuts` command line, the Slicer module, the batch script) turns a
`CUTSError` into one clear line; anything else is a bug and keeps its traceback.
"""


class CUTSError(Exception):
    """Base class: a problem with the user's input or environment, explained in one line."""


class InputError(CUTSError):
    """The input image, volume or file cannot be segmented (missing, unreadable, empty, constant, NaN, 4D...)."""


class ModelFileError(CUTSError):
    """A model file is missing, corrupt, of the wrong kind, or does not fit the input."""


class ResourceError(CUTSError):
    """The job would need more memory than the machine can give it."""


class CancelledError(CUTSError):
    """The user cancelled a long job; nothing half-written is left behind."""
