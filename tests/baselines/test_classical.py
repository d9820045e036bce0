"""The classical clump finder: finds isolated bright clumps, ignores a smooth disc, and runs
through the same evaluator as the networks."""
import numpy as np
import pytest
import torch

from clump_d2.baselines import ClassicalClumpFinder, ClassicalParams, find_clumps
from clump_d2.sim.inject import gaussian_psf_stamp
from clump_d2.evaluation.matching import count_matches

SIZE, FWHM = 160, 5.0
CLUMPS = [(60.5, 70.5), (105.2, 88.7), (80.0, 115.0)]


def _disc(rng, clumps=(), frac=0.08, noise=1.0, q=0.7):
    """Exponential disc (total flux 4e4 sky sigma), PSF-convolved clumps, Gaussian noise."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    c = SIZE / 2
    r = np.hypot(xx - c, (yy - c) / q)
    disc = np.exp(-r / 14.0)
    disc *= 4e4 / disc.sum()
    img = disc + sum(frac * 4e4 * gaussian_psf_stamp((SIZE, SIZE), x, y, FWHM)
                     for x, y in clumps)
    return img + rng.normal(0, noise, img.shape)


def _true_boxes(clumps):
    h = 1.25 * FWHM
    return [[x - h, y - h, x + h, y + h] for x, y in clumps]


def test_finds_isolated_bright_clumps():
    found = find_clumps(_disc(np.random.default_rng(0), CLUMPS), FWHM)
    counts = count_matches(_true_boxes(CLUMPS), found["boxes"][found["scores"] >= 0.5])
    assert counts.n_matched == 3
    assert counts.n_det <= 4
    # boxes are Clump Scout squares of side 2.5 x FWHM on the peaks
    sides = found["boxes"][:, 2] - found["boxes"][:, 0]
    assert np.allclose(sides, 2.5 * FWHM)
    for x, y in CLUMPS:
        d = np.hypot(found["xy"][:, 0] - x, found["xy"][:, 1] - y)
        assert d.min() <= 1.0
    assert found["snr"].min() >= ClassicalParams().nsigma


def test_ignores_a_smooth_disc():
    for seed in range(3):
        found = find_clumps(_disc(np.random.default_rng(seed)), FWHM)
        assert int((found["scores"] >= 0.5).sum()) == 0
        assert len(found["boxes"]) <= 1


def test_faint_clumps_score_lower_than_bright_ones():
    rng = np.random.default_rng(1)
    bright = find_clumps(_disc(rng, CLUMPS[:1], frac=0.1), FWHM)
    faint = find_clumps(_disc(rng, CLUMPS[:1], frac=0.01), FWHM)
    b = bright["scores"][np.argmin(np.hypot(*(bright["xy"] - CLUMPS[0]).T))]
    f = faint["scores"].max() if len(faint["scores"]) else 0.0
    assert b > 0.9 and f < b


def test_runs_like_a_detectron2_model_through_the_evaluator():
    from clump_d2.evaluation import ClumpEvaluator

    img = _disc(np.random.default_rng(2), CLUMPS)
    rgb = np.repeat(img[:, :, None], 3, axis=2).astype(np.float32)
    model = ClassicalClumpFinder()
    out = model([{"image": torch.as_tensor(rgb.transpose(2, 0, 1)), "psf_fwhm_px": FWHM,
                  "height": SIZE, "width": SIZE}])[0]["instances"]
    assert out.image_size == (SIZE, SIZE) and len(out) >= 3
    assert out.pred_classes.eq(0).all()
    # Scaled to the requested output size (Detectron2's postprocess convention).
    big = model([{"image": torch.as_tensor(rgb.transpose(2, 0, 1)), "psf_fwhm_px": FWHM,
                  "height": 2 * SIZE, "width": 2 * SIZE}])[0]["instances"]
    assert torch.allclose(big.pred_boxes.tensor, 2 * out.pred_boxes.tensor)
    dicts = [{"image_id": 1, "annotations": [
        {"bbox": b, "bbox_mode": 0, "category_id": 0} for b in _true_boxes(CLUMPS)]}]
    ev = ClumpEvaluator("unregistered_for_test", score_thresh=0.5, plot=False,
                        distributed=False)
    ev.process([{"image_id": 1}], [{"instances": out}])
    report = ev.compute(ev.predictions, dicts)
    assert report["operating"]["all"]["n_matched"] == 3
    assert report["operating"]["all"]["completeness"] == pytest.approx(1.0)


def test_colour_cut_keeps_blue_clumps_and_drops_red_knots():
    """RGB: a grey disc with two blue clumps and one red knot of the same brightness; the
    luminance finder takes all three, the colour cut (B - R) / G >= 0 only the blue ones."""
    rng = np.random.default_rng(4)
    grey = _disc(rng)
    blue, red = CLUMPS[:2], CLUMPS[2:]
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for (x, y), weights in [(xy, (0.5, 1.0, 1.5)) for xy in blue] + \
                           [(xy, (1.5, 1.0, 0.5)) for xy in red]:
        stamp = 0.08 * 4e4 * gaussian_psf_stamp((SIZE, SIZE), x, y, FWHM)
        rgb += stamp[:, :, None] * np.array(weights)[None, None, :]
    plain = find_clumps(rgb, FWHM)
    cut = find_clumps(rgb, FWHM, ClassicalParams(min_colour=0.0))
    assert count_matches(_true_boxes(CLUMPS), plain["boxes"]).n_matched == 3
    assert count_matches(_true_boxes(blue), cut["boxes"]).n_matched == 2
    assert count_matches(_true_boxes(red), cut["boxes"]).n_matched == 0
    from clump_d2.baselines.classical import peak_colour

    ys, xs = np.array([int(y) for _, y in CLUMPS]), np.array([int(x) for x, _ in CLUMPS])
    colour = peak_colour(rgb, FWHM, ys, xs)
    assert colour[:2] == pytest.approx([1.0, 1.0], abs=0.1)  # (1.5 - 0.5) / 1
    assert colour[2] == pytest.approx(-1.0, abs=0.1)
    # a grey (one-channel) image skips the cut
    assert len(find_clumps(grey, FWHM, ClassicalParams(min_colour=0.0))["boxes"]) == \
        len(find_clumps(grey, FWHM)["boxes"])
