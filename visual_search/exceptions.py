"""Errors raised by visual search. Each message says what went wrong and what to do."""

from .reasons import LARGER_THAN


class VisualSearchError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidImage(VisualSearchError, ValueError):
    """The image cannot be used: not an image, damaged, an unsupported format or too large.

    A permanent failure: retrying the same bytes gives the same answer, so tasks record it on the
    embedding row instead of retrying, and the API answers 400.
    """

    code = "invalid_image"

    def __init__(self, message: str = "", *args, technical: str = ""):
        super().__init__(message, *args)
        # What the decoder said ("OSError: image file is truncated..."): for staff (the row's failure
        # reason, the log), not for a customer, who reads ``str(exc)``.
        self.technical = technical

    @property
    def for_staff(self) -> str:
        return f"{self} ({self.technical})" if self.technical else str(self)


class InvalidBox(InvalidImage):
    """The region of the photo to search (``box``) is malformed, empty or outside the image."""

    code = "invalid_box"


class ImageTooLarge(InvalidImage):
    """The file is larger than ``MAX_UPLOAD_BYTES`` or has more pixels than ``MAX_PIXELS``."""

    code = "image_too_large"

    @classmethod
    def over(cls, max_bytes: int) -> "ImageTooLarge":
        """The error of a file of more than ``max_bytes`` bytes."""
        return cls(LARGER_THAN % {"megabytes": max_bytes // (1024 * 1024) or 1})


class BlankImage(InvalidImage):
    """A photo (or the region of it searched) of one colour all over: a lens cap, a blank page.
    Every product would be an equally poor match, and its scores read like a real search's."""

    code = "blank_image"


class UnsupportedFormat(InvalidImage):
    """A real image in a format that is not in ``ALLOWED_FORMATS`` (SVG, EPS, PDF...); ``kind``
    names it ("SVG", "HEIC", a Pillow format name) for the customer's words."""

    code = "unsupported_format"

    def __init__(self, message: str, kind: str = ""):
        super().__init__(message)
        self.kind = kind


class WeightsUnavailable(VisualSearchError):
    """The configured VGG16 weights cannot be loaded (no network for "imagenet", missing file)."""


class TooManySearches(VisualSearchError):
    """This process already runs ``MAX_CONCURRENT_SEARCHES`` photo searches, and none finished
    within the wait: a burst the server cannot take now. It passes: ask again after
    ``retry_after`` seconds (the API and the search page answer 503 ``busy``)."""

    code = "busy"

    def __init__(self, limit: int, retry_after: int):
        super().__init__(
            f"Search by photo is busy: this process runs MAX_CONCURRENT_SEARCHES ({limit}) at once and none "
            f"finished within the wait; try again in {retry_after} seconds."
        )
        self.limit, self.retry_after = limit, retry_after
