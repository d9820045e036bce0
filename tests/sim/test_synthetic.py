"""The synthetic galaxy generator: deterministic, physically sensible, labels in frame."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from clump_d2.sim.synthetic import (
    SyntheticParams,
    galaxy_rng,
    make_split,
    render_galaxy,
)
from clump_d2.structures import BOX_SIDE_PER_FWHM

PARAMS = SyntheticParams(image_size=80, disc_re=(8.0, 14.0))


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_split(tmp_path / name, "train", 5, seed=seed, params=PARAMS, show_progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_galaxy_k_does_not_depend_on_split_size(tmp_path):
    make_split(tmp_path / "small", "val", 2, seed=0, params=PARAMS, show_progress=False)
    make_split(tmp_path / "large", "val", 4, seed=0, params=PARAMS, show_progress=False)
    f = "images/val/sim_val_000001.png"
    assert (tmp_path / "small" / f).read_bytes() == (tmp_path / "large" / f).read_bytes()


def test_labels_inside_images_and_sized_by_psf(tmp_path):
    params = SyntheticParams(image_size=96, disc_re=(8.0, 16.0), empty_fraction=0.3)
    json_path = make_split(tmp_path, "train", 30, seed=2, params=params, show_progress=False)
    coco = json.loads(json_path.read_text())
    assert {c["name"] for c in coco["categories"]} == {"clump", "odd_clump"}
    images = {im["id"]: im for im in coco["images"]}
    assert len(images) == 30 and len(set(images)) == 30
    per_image = {i: 0 for i in images}
    for ann in coco["annotations"]:
        im = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= im["width"] + 1e-9 and y + h <= im["height"] + 1e-9
        assert w > 0 and h > 0
        side = BOX_SIDE_PER_FWHM * im["psf_fwhm_px"]
        assert max(w, h) <= side + 1e-6
        assert 0.03 - 1e-9 <= ann["flux_frac"] <= 0.35 + 1e-9
        assert ann["category_id"] in (1, 2)
        per_image[ann["image_id"]] += 1
    n_empty = sum(v == 0 for v in per_image.values())
    assert 3 <= n_empty <= 18  # about 30 % of 30 galaxies are clump-free negatives
    for im in coco["images"]:
        arr = np.asarray(Image.open(tmp_path / "images" / im["file_name"]))
        assert arr.shape == (96, 96, 3) and arr.dtype == np.uint8


def test_clumps_are_bright_blue_point_sources_where_labelled():
    params = SyntheticParams(image_size=120, clump_frac=(0.2, 0.3), empty_fraction=0.0,
                             star_rate=0.0, bg_galaxy_rate=0.0)
    galaxy = render_galaxy(galaxy_rng(0, "train", 7), params)
    assert galaxy.clumps
    g, r, i = galaxy.bands
    for clump in galaxy.clumps:
        x, y = int(round(clump["x"])), int(round(clump["y"]))
        local = r[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].mean()
        ring = r[max(0, y - 8) : y + 9, max(0, x - 8) : x + 9]
        assert local > np.median(ring)  # a local peak above its surroundings
        if not clump["odd"]:
            # normal clumps are bluer (g/r) than the disc around them
            assert g[y, x] / r[y, x] > params.colour_disc[0] / params.colour_disc[1] * 0.98


def test_make_split_writes_per_band_fits_with_truth(tmp_path):
    """FITS per band (BUNIT/zero point), the same pixels as the rendered bands, and the truth
    of the photometry: per-band clump and host fluxes, ratios consistent with them."""
    import json

    from astropy.io import fits

    from clump_d2.sim.synthetic import SyntheticParams, galaxy_rng, make_split, render_galaxy

    params = SyntheticParams(image_size=64, disc_re=(6.0, 10.0), empty_fraction=0.0)
    js = make_split(tmp_path, "val", 2, seed=3, params=params, show_progress=False, fits=True,
                    fits_zero_point=27.0)
    coco = json.loads(js.read_text())
    im = coco["images"][0]
    galaxy = render_galaxy(galaxy_rng(3, "val", 0), params)
    for k, band in enumerate("gri"):
        path = tmp_path / "images" / im["fits_file"].format(band=band)
        data, header = fits.getdata(path, header=True)
        assert header["BUNIT"] == "nanomaggy" and header["MAGZP"] == 27.0
        assert np.array_equal(data, galaxy.bands[k])
        assert im[f"host_flux_{band}"] == pytest.approx(galaxy.host_flux_bands[k])
    anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
    assert anns and im["fits_bands"] == ["g", "r", "i"]
    for a in anns:
        # Basic renderer: clump colour g:r:i = 1.3:1:0.85 (odd clumps 0.5:1:1.45).
        colour = params.colour_odd if a["category_id"] == 2 else params.colour_clump
        assert a["flux_g"] / a["flux_r"] == pytest.approx(colour[0])
        assert a["flux_frac_i"] == pytest.approx(a["flux_i"] / im["host_flux_i"])
    # The host flux is the galaxy's light: disc + bulge (r = flux_r / flux_frac) + clumps.
    disc_bulge_r = anns[0]["flux_r"] / anns[0]["flux_frac"]
    clumps_r = sum(c["flux_bands"][1] for c in galaxy.clumps)
    assert im["host_flux_r"] == pytest.approx(disc_bulge_r + clumps_r, rel=0.02)
