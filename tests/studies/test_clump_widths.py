"""How wide clumps are in PSF FWHMs: the moment ratio, its response curve, the dataset and the
tool (clump_d2.studies.clump_widths)."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from clump_d2.data.psf import gaussian_psf
from clump_d2.data.stretch import DisplayStretch
from clump_d2.studies.clump_widths import (measure_widths, moment_ratio, parse_set, ratio_curve,
                                           width_from_ratio)

FWHM = 4.0
SIZE = 64


def clump_image(width_psf: float, x: float = 32.3, y: float = 31.6, flux: float = 200.0,
                gradient: float = 0.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    edges = np.arange(SIZE + 1)
    img = 1.0 + gradient * np.arange(SIZE)[None, :] + 0 * edges[:SIZE, None]
    img = img + flux * gaussian_psf(edges, edges, x, y, FWHM * width_psf)
    return img + np.random.default_rng(seed).normal(0, noise, img.shape) if noise else img


@pytest.mark.parametrize("width", [1.0, 1.5, 2.0])
def test_moment_ratio_reads_the_width_back_through_the_curve(width):
    """A Gaussian clump of 1 / 1.5 / 2 PSF FWHM on a sloping background: the ratio, turned into
    a width by the curve (made at another PSF), gives the width back within 5 %."""
    ratio, snr, reason = moment_ratio(clump_image(width, gradient=0.05, noise=0.01), 32.3, 31.6,
                                      FWHM)
    assert reason == "" and snr > 50
    got = width_from_ratio(np.array([ratio]), ratio_curve())[0]
    assert got == pytest.approx(width, rel=0.05)


def test_curve_rises_and_saturates():
    curve = ratio_curve()
    assert np.all(np.diff(curve[:, 1]) > 0)
    assert curve[1, 0] == 1.0 and curve[1, 1] == pytest.approx(1.0, abs=0.05)
    assert 1.3 < curve[-1, 1] < 1.5  # the cut loses a wide clump's wings
    w = width_from_ratio(np.array([0.5, curve[-1, 1] + 0.05]), curve)
    assert w[0] == curve[0, 0] and math.isinf(w[1])


def test_refusals_are_named():
    img = clump_image(1.0)
    assert moment_ratio(img, 3.0, 32.0, FWHM)[2] == "edge"
    assert moment_ratio(img, 32.3, 31.6, FWHM, others=[(36.0, 33.0)])[2] == "neighbour"
    # pure noise where the clump is not: too faint to measure
    assert moment_ratio(clump_image(1.0, flux=0.0, noise=0.05), 32.3, 31.6, FWHM)[2] == "faint"


def _write_dataset(root):
    """Two images: a point-like knot (version 0), the same host again (version 1, skipped in
    knot mode) and a labelled 2-PSF-wide clump in an image whose PSF is a prior."""
    disp = DisplayStretch(10.0)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, anns = [], []
    for k, (width, source, version) in enumerate([(1.0, "stars", 0), (1.0, "stars", 1),
                                                  (2.0, "prior", 0)]):
        lin = np.repeat(clump_image(width, flux=20.0)[..., None] * 0.05, 3, axis=2)
        Image.fromarray(disp.display(lin)).save(root / "images" / f"{k}.png")
        images.append({"id": k + 1, "file_name": f"{k}.png", "width": SIZE, "height": SIZE,
                       "psf_fwhm_px": FWHM, "psf_source": source, "version": version})
        knot = width == 1.0
        anns.append({"id": k + 1, "image_id": k + 1, "bbox": [27, 27, 10, 10], "area": 100,
                     "category_id": 1, "iscrowd": int(knot), "x": 32.3, "y": 31.6,
                     **({"ignore_reason": "host_knot"} if knot else {})})
    path = root / "annotations" / "train.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    return path


def test_measure_widths_of_a_dataset_knots_labels_and_psf_source(tmp_path):
    path = _write_dataset(tmp_path / "ds")
    knots = measure_widths(path, knots=True)
    assert knots["n_images"] == 1 and [r["file"] for r in knots["rows"]] == ["0.png"]
    assert knots["rows"][0]["width"] == pytest.approx(1.0, abs=0.15)
    labels = measure_widths(path)
    assert [r["file"] for r in labels["rows"]] == ["2.png"]
    assert labels["rows"][0]["width"] == pytest.approx(2.0, rel=0.15)
    assert measure_widths(path, psf_source="stars")["rows"] == []  # its PSF was a prior


def test_tool_writes_the_table_and_refuses_a_bad_set(tmp_path, load_tool, capsys):
    path = _write_dataset(tmp_path / "ds")
    tool = load_tool("measure_clumps")
    out = tmp_path / "w" / "widths.md"
    assert tool.main(["widths", "--output", str(out), "--set", f"knots={path}:knots",
                      "--set", f"clumps={path}"]) == 0
    md = out.read_text()
    assert "| knots | 1 | 1 | 0 / 0 / 0 |" in md and "| clumps | 1 | 1 |" in md
    rows = json.loads(out.with_suffix(".json").read_text())
    assert rows["clumps"]["rows"][0]["width"] == pytest.approx(2.0, rel=0.15)
    assert parse_set("a b=x.json:stars:knots") == ("a b", "x.json", True, "stars")
    with pytest.raises(SystemExit) as e:
        tool.main(["widths", "--output", str(out), "--set", f"x={path}:bogus"])
    assert e.value.code == 2 and "expected NAME=ANNOTATIONS_JSON" in capsys.readouterr().err
