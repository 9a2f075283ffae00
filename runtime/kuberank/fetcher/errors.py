"""Fetch failures carry a sentence that ends up in the pod's termination message."""


class FetchError(RuntimeError):
    """The model could not be fetched; the message says why and what to check."""


class ChecksumMismatchError(FetchError):
    """The downloaded bytes are not the file the spec promised."""
