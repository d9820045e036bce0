"""Image folder reading, the split by galaxy, and the sky-respecting augmentations."""
import json

import pytest
import torch

from clump_d2.pretrain.augment import SkyAugmentation
from clump_d2.pretrain.images import (
    list_image_folder,
    load_images,
    read_split,
    split_by_galaxy,
    write_split,
)


def test_folder_and_split(image_folder, tmp_path):
    images, classes = list_image_folder(str(image_folder))
    assert classes == ["blue", "red"]
    assert len(images) == 24 and [im.label for im in images] == [0] * 12 + [1] * 12
    split = split_by_galaxy(images, 0.25, seed=3)
    assert split == split_by_galaxy(list(reversed(images)), 0.25, seed=3)  # order-free
    assert split != split_by_galaxy(images, 0.25, seed=4)
    assert not set(split["train"]) & set(split["heldout"])
    assert len(split["heldout"]) == 6 and len(split["train"]) == 18
    # Stratified: 3 of each class held out.
    held = [im.class_name for im in images if im.galaxy in split["heldout"]]
    assert held.count("blue") == held.count("red") == 3
    write_split(split, str(tmp_path), seed=3)
    assert read_split(str(tmp_path))["heldout"] == split["heldout"]
    assert json.loads((tmp_path / "split.json").read_text())["seed"] == 3

    pixels, labels = load_images(images[:2], size=16, crop=0.5)
    assert pixels.shape == (2, 3, 16, 16) and pixels.dtype == torch.uint8
    assert labels.tolist() == [0, 0]
    # The centre of a blue galaxy: blue band brightest.
    centre = pixels[0, :, 6:10, 6:10].float().mean(dim=(1, 2))
    assert centre[2] > 1.5 * centre[0]


def test_declared_size_is_bounded_before_decoding(tmp_path):
    """A 115-byte PNG declaring 12000 x 12000 px is refused from its header, naming it."""
    from image_helpers import write_png

    from clump_d2.data.image_io import ImageSizeError
    from clump_d2.pretrain.images import load_image

    bomb = write_png(tmp_path / "bomb.png", 12000, 12000, rows=1)
    with pytest.raises(ImageSizeError, match=r"bomb\.png: 12000 x 12000 = 144\.0 Mpx > "
                                             r"INPUT\.MAX_PIXELS"):
        load_image(str(bomb), 32, 1.0)


def test_duplicate_galaxy_rejected(image_folder, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src = next((image_folder / "red").iterdir())
    for d in ("a", "b"):
        (tmp_path / d / src.name).write_bytes(src.read_bytes())
    with pytest.raises(ValueError, match="appears twice"):
        list_image_folder(str(tmp_path))


def test_augmentations_keep_colour():
    colour = torch.tensor([0.6, 0.3, 0.15]).view(1, 3, 1, 1)
    flat = colour.expand(8, 3, 24, 24).clone()
    no_noise = SkyAugmentation(max_noise=0.0, blur_prob=1.0, max_blur_sigma=1.5,
                               max_shift=0.1, scale=(0.8, 1.2))
    out = no_noise(flat, torch.Generator().manual_seed(0))
    assert out.shape == flat.shape
    torch.testing.assert_close(out, flat, atol=1e-5, rtol=0)
    # With noise, only the noise changes the colour: band means keep their ratios within a
    # few noise standard errors (sigma <= 0.02 over 8 * 576 pixels).
    noisy = SkyAugmentation(max_noise=0.02)(flat, torch.Generator().manual_seed(1))
    means = noisy.mean(dim=(0, 2, 3))
    assert (noisy - flat).std() > 1e-3  # the noise is there
    torch.testing.assert_close(means / means[0], torch.tensor([1.0, 0.5, 0.25]), atol=2e-3,
                               rtol=0)


def test_augmentations_geometry_and_determinism():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) / 384
    aug = SkyAugmentation(max_shift=0.0, scale=(1.0, 1.0), blur_prob=0.0, max_noise=0.0)
    dihedral = [torch.rot90(v, k, dims=(-2, -1)) for v in (x[0], x[0].flip(-1))
                for k in range(4)]
    seen = set()
    for seed in range(12):
        out = aug(x, torch.Generator().manual_seed(seed))
        match = [i for i, d in enumerate(dihedral) if torch.equal(out[0], d)]
        assert len(match) == 1  # a flip/rotation of the input, pixel-exact
        seen.add(match[0])
    assert len(seen) >= 4
    full = SkyAugmentation()
    a = full(x, torch.Generator().manual_seed(5))
    b = full(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, full(x, torch.Generator().manual_seed(6)))
