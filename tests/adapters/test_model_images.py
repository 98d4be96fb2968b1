"""SandboxRunner hands displayed images to the adapters: capped, checked, the rest noted."""

from __future__ import annotations

import base64

import pytest
import securepy
from securepy.adapters import MAX_MODEL_IMAGE_BYTES, MAX_MODEL_IMAGES, ModelImage, SandboxRunner

from .images import DOT_CODE, PNG_SIGNATURE, png_size


@pytest.mark.parametrize(
    "sandbox",
    [pytest.param(True, marks=pytest.mark.sandbox), False],
    ids=["sandboxed", "unsandboxed"],
)
def test_a_displayed_png_becomes_a_model_image(sandbox: bool) -> None:
    runner = SandboxRunner(sandbox=sandbox, timeout=30)
    try:
        outcome = runner.run(DOT_CODE + "display(dot(3))\nprint('drawn')")
    finally:
        runner.close()
    assert not outcome.is_error
    [image] = outcome.images
    assert image.mime_type == "image/png" and image.data.startswith(PNG_SIGNATURE)
    assert png_size(image.data) == (1, 3)
    assert base64.b64decode(image.base64) == image.data
    assert image.data_url == "data:image/png;base64," + image.base64
    assert outcome.text == "drawn\n[display: image/png]\ndot(3)"


def test_a_text_only_run_has_no_images() -> None:
    runner = SandboxRunner(sandbox=False, timeout=10)
    try:
        outcome = runner.run("print('plain')\n6 * 7")
    finally:
        runner.close()
    assert (outcome.text, outcome.images) == ("plain\n42", ())


def test_images_past_the_cap_are_named_in_a_note() -> None:
    runner = SandboxRunner(sandbox=False, timeout=10)
    try:
        outcome = runner.run(
            DOT_CODE + f"for i in range({MAX_MODEL_IMAGES + 2}): display(dot(i + 1))"
        )
    finally:
        runner.close()
    assert [png_size(image.data) for image in outcome.images] == [
        (1, width) for width in range(1, MAX_MODEL_IMAGES + 1)
    ]
    notes = [line for line in outcome.text.splitlines() if "not shown" in line]
    assert len(notes) == 2
    assert notes[0].startswith("[image/png output: ")
    assert notes[0].endswith(
        f"bytes, not shown: at most {MAX_MODEL_IMAGES} images are shown per run]"
    )


def test_a_mislabelled_or_oversized_image_is_a_note_not_an_image() -> None:
    # The child is hostile: bytes that are not the format they claim would make the model's
    # API refuse the whole request, so they never reach it.
    limits = securepy.Limits(output_bytes=2 * MAX_MODEL_IMAGE_BYTES)
    runner = SandboxRunner(sandbox=False, timeout=10, limits=limits)
    try:
        outcome = runner.run(
            "display({'image/png': b'GIF89a not a png', 'text/plain': 'fake'}, raw=True)\n"
            f"display({{'image/jpeg': b'\\xff\\xd8\\xff' + bytes({MAX_MODEL_IMAGE_BYTES})}},"
            " raw=True)"
        )
    finally:
        runner.close()
    assert outcome.images == ()
    assert "[image/png output: 16 bytes, not shown: not a valid image/png]" in outcome.text
    assert (
        f"[image/jpeg output: {MAX_MODEL_IMAGE_BYTES + 3:,} bytes, not shown: "
        f"over {MAX_MODEL_IMAGE_BYTES:,} bytes]"
    ) in outcome.text


def test_model_image_is_a_plain_value() -> None:
    image = ModelImage("image/gif", b"GIF89a")
    assert image.base64 == "R0lGODlh"
