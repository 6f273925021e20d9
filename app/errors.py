"""Errors that carry a one-line, user-facing message (the CLI prints it and exits 2)."""


class LookoutError(Exception):
    """A user-facing error: str(err) is one line naming what is wrong."""


class ConfigError(LookoutError):
    """The configuration file or a flag is invalid."""


class ArtifactError(LookoutError):
    """A model artifact is missing, corrupt, mismatched or cannot be loaded."""


class RuntimeUnavailable(LookoutError):
    """A runtime's library or device is not present on this machine."""
