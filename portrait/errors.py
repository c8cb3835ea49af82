"""Errors the command line reports as one clear line (what was wrong, what to do)."""


class PortraitError(Exception):
    """A user-facing error: the message says what was wrong and what to do.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``; no traceback.
    """

    exit_code = 2


class InputError(PortraitError):
    """An input file, folder or device that cannot be read."""


class ModelError(PortraitError):
    """A model file that is missing, corrupt, unsafe or of an unsupported shape."""


class DeviceError(PortraitError):
    """A camera or virtual camera that cannot be opened."""
