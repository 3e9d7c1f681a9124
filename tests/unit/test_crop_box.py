"""RESIZE_MODE=crop on a model without a crop_fraction: the centre box must stay inside the
image for every size (58x58 at 224 once gave a -3.6e-15 offset, which Pillow refused, and
the image was reported as corrupt_image)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from shared.models.spec import InputSpec
from shared.preprocess import _centre_box, preprocess

SPEC = InputSpec(height=224, width=224, resize_mode="crop")


@pytest.mark.parametrize("size", [(58, 58), (116, 116), (640, 116)])
def test_sizes_that_rounded_outside_the_image(size):
    img = Image.new("RGB", size, (10, 200, 30))

    array = preprocess(img, SPEC)

    assert array.shape == (224, 224, 3)
    assert np.allclose(array[112, 112], np.array([10, 200, 30]) / 255.0, atol=0.01)


def test_every_box_is_inside_the_image_and_centred():
    for src, dst, fraction in itertools.product(itertools.product(range(1, 700, 19), repeat=2),
                                                [(224, 224), (299, 299), (320, 240)], [1.0, 0.875]):
        left, top, right, bottom = _centre_box(src, dst, fraction)
        assert 0 <= left <= right <= src[0] and 0 <= top <= bottom <= src[1], (src, dst, fraction)
        assert abs(left - (src[0] - right)) < 1e-9 and abs(top - (src[1] - bottom)) < 1e-9, (src, dst, fraction)
