"""What one request may cost: the size limits derived from ``--max_image_size``, and time.

Plain data without TensorFlow, so that ``python -m serving.dev_server --help`` shows the
defaults at once.
"""

import dataclasses

IMAGES_PER_REQUEST = 8
"""Images of the largest size one request may carry within :attr:`RequestLimits.grpc_bytes`."""

DEFAULT_TIMEOUT_SECONDS = 30.0
"""Longest wait for any read from a REST client (request line, headers, body)."""


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What one request may cost, derived from the largest image side served.

    Args:
        max_image_size: int. Largest height or width, pixels, of an image input (rank 4,
            ``[batch, height, width, channels]``), as exported with ``--max-image-size``.
            Defaults to 2048, the export's default.

    Attributes:
        grpc_bytes: int. gRPC receive limit: ``IMAGES_PER_REQUEST`` RGBA images of the
            largest size, plus 1 MiB: 129 MiB at 2048 px, 1.1 MiB at 64 px.
        rest_bytes: int. REST body limit: five times ``grpc_bytes``, for JSON's decimal
            pixels (up to 4 characters a value) and base64 (4/3).
    """

    max_image_size: int = 2048

    @property
    def grpc_bytes(self):
        return min(IMAGES_PER_REQUEST * self.max_image_size ** 2 * 4 + (1 << 20), 2 ** 31 - 1)

    @property
    def rest_bytes(self):
        return 5 * self.grpc_bytes
