"""Data that installs with the package: the photo crops that widen the image patching set."""

import pytest
import torch

from mudjacking.data.builtin import load_digits_images, load_photo_crops
from mudjacking.pipeline.settings.image import ImageSetting, image_splits


def test_photo_crops_are_grayscale_images_in_range_and_repeat_by_seed():
    crops = load_photo_crops(50, (28, 28), seed=3)
    assert crops.shape == (50, 1, 28, 28) and crops.min() >= 0 and crops.max() <= 1
    assert torch.equal(crops, load_photo_crops(50, (28, 28), seed=3))
    assert not torch.equal(crops, load_photo_crops(50, (28, 28), seed=4))
    assert crops.flatten(1).std(1).median() > 0.02  # texture, not blank squares
    assert load_photo_crops(0, (16, 16)).shape == (0, 1, 16, 16)


def test_demo_patching_set_holds_its_images_then_the_crops():
    data = load_digits_images(0, size=(16, 16))
    config = ImageSetting(patching_size=100, photo_crops=40, downstream_train_size=200, shadow_size=100)
    patching = image_splits(data, config)["patching"]
    assert patching.shape == (140, 1, 16, 16)
    assert torch.equal(patching[100:], load_photo_crops(40, (16, 16), seed=0))
    assert (
        image_splits(data, ImageSetting(patching_size=100, photo_crops=0, downstream_train_size=200))["patching"].shape[
            0
        ]
        == 100
    )


def test_negative_photo_crops_is_an_error():
    with pytest.raises(ValueError, match="photo_crops"):
        ImageSetting(photo_crops=-1)
