"""Images a run displayed, as the model is shown them: at most :data:`MAX_MODEL_IMAGES` per run,
each at most :data:`MAX_MODEL_IMAGE_BYTES` and checked to be the format it claims; the rest are
named in a note instead."""

from __future__ import annotations

import base64
import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

__all__ = [
    "MAX_MODEL_IMAGES",
    "MAX_MODEL_IMAGE_BYTES",
    "ModelImage",
    "describe_image",
    "model_images",
]

#: Most images one run hands to the model; further ones are named in a note in the text.
MAX_MODEL_IMAGES = 4
#: Larger images are named in a note instead (Anthropic's API refuses images over 5 MB).
MAX_MODEL_IMAGE_BYTES = 5 * 1000 * 1000

# The formats every adapter's API accepts, with the signature their bytes must start with (the
# child is hostile: a mislabelled image would make the model's API refuse the whole request).
_IMAGE_SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}


@typing.final
@dataclasses.dataclass(frozen=True, slots=True)
class ModelImage:
    """One image of a run, for the model.

    Attributes:
        mime_type: ``image/png``, ``image/jpeg`` or ``image/gif``.
        data: the image's bytes, checked to start with that format's signature.
    """

    mime_type: str
    data: bytes

    @property
    def base64(self) -> str:
        """The bytes in base64, as the APIs' inline image sources take them."""
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_url(self) -> str:
        """A ``data:`` URL of the image (OpenAI's ``image_url``)."""
        return f"data:{self.mime_type};base64,{self.base64}"


def model_images(
    outputs: Iterable[Any], max_images: int = MAX_MODEL_IMAGES
) -> tuple[tuple[ModelImage, ...], str]:
    """The images among ``outputs`` (``securepy.Output``) to show the model, and a note
    naming those left out and why ("" when none are).

    One image per output, its richest format; an output without a valid image is text only
    (already in ``Execution.render_text``).
    """
    shown: list[ModelImage] = []
    left_out: list[str] = []
    for output in outputs:
        for mime, signatures in _IMAGE_SIGNATURES.items():
            data = output.data.get(mime)
            if not isinstance(data, bytes):
                continue
            if not data.startswith(signatures):
                left_out.append(
                    f"[{mime} output: {len(data):,} bytes, not shown: not a valid {mime}]"
                )
            elif len(data) > MAX_MODEL_IMAGE_BYTES:
                left_out.append(
                    describe_image(ModelImage(mime, data), f"over {MAX_MODEL_IMAGE_BYTES:,} bytes")
                )
            elif len(shown) >= max_images:
                left_out.append(
                    describe_image(
                        ModelImage(mime, data), f"at most {max_images} images are shown per run"
                    )
                )
            else:
                shown.append(ModelImage(mime, data))
            break
    return tuple(shown), "\n".join(left_out)


def describe_image(image: ModelImage, why: str) -> str:
    """A note standing in for an image the model does not see, e.g.
    ``[image/png output: 12,345 bytes, not shown: <why>]``."""
    return f"[{image.mime_type} output: {len(image.data):,} bytes, not shown: {why}]"
