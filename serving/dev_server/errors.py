"""The error every request path raises: a gRPC status code and TF Serving's message."""

import re


class ServingError(Exception):
    """A request failed with a gRPC status `code` (REST: the matching HTTP status)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def clean_tf_message(message):
    """The useful lines of a TensorFlow runtime error (drops eager-call framing and node names)."""
    skip = ("Graph execution error:", "Detected at node", "<stack traces unavailable>")
    lines = [line for line in message.splitlines()
             if line.strip() and not line.startswith(skip) and not line.lstrip().startswith("[[")]
    text = " ".join(line.strip() for line in lines) or message
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", text)
