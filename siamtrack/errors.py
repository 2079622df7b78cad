"""The one exception family a user can cause; the CLI prints these as one line."""


class SiamtrackError(Exception):
    """A problem the user can fix (bad input, missing file, bad option)."""


class CheckpointError(SiamtrackError):
    """A checkpoint that cannot be loaded as the requested model."""


class SourceError(SiamtrackError):
    """A frame source that cannot be opened or read."""


class WeightsDownloadError(SiamtrackError):
    """A registry download that failed or did not verify."""
