"""Injection-recovery: clumps land where asked with the flux asked, in display and FITS
images; recovery is counted with the evaluator's matching rule."""
import numpy as np
import pytest
from astropy.io import fits

from clump_d2.data.stretch import DisplayStretch
from clump_d2.sim.inject import host_properties, inject, load_linear, network_input_fn
from clump_d2.studies.injection import (
    InjectionConfig,
    baseline_detector,
    run_injection,
    summarise,
    write_outputs,
)

from injection_helpers import FWHM, SIZE, aperture, centroid, smooth_galaxy


def test_flux_fraction_is_relative_to_the_host(tmp_path):
    lin = smooth_galaxy(np.random.default_rng(2), noise=0.005)
    host = host_properties(lin, FWHM)
    assert host["centre"] == pytest.approx((60.5, 60.5), abs=1.5)
    # the segment holds most of the host's light (exponential disc, flux 2 pi h^2 I0 q)
    true_g = 3.0 * 2 * np.pi * 12.0**2 * 0.7
    assert host["flux"][1] == pytest.approx(true_g, rel=0.1)
    # R50 of an exponential disc = 1.678 h (circularised for q = 0.7: x sqrt(0.7))
    assert host["r50"] == pytest.approx(1.678 * 12.0 * np.sqrt(0.7), rel=0.2)


def test_run_injection_recovers_bright_and_misses_faint(tmp_path):
    """With the classical finder: 20 % clumps recovered, 0.05 % clumps not; the table has
    the counts and the plot is written."""
    lin = smooth_galaxy(np.random.default_rng(3), noise=0.02)
    disp = DisplayStretch(q=10.0)
    lin = disp.linearise(disp.display(lin), np.random.default_rng(0))
    images = [{"name": "g", "linear": lin, "psf_fwhm_px": FWHM}]
    cfg = InjectionConfig(flux_fractions=(0.0005, 0.2), per_image=2, trials=3,
                          radius_r50=(0.8, 1.8), score_thresh=0.5, seed=1)
    rows = run_injection(images, baseline_detector(), cfg, network_input_fn("display"),
                         show_progress=False)
    assert len(rows) == 2 * 3 * 2
    for r in rows:
        assert 0.8 * r["r50_px"] - 1e-6 <= r["distance_px"] <= 1.8 * r["r50_px"] + 1e-6
    s = summarise(rows, cfg.flux_fractions, [0.8, 1.3, 1.8])
    by = {b["flux_frac"]: b for b in s["by_flux_frac"]}
    assert by[0.2]["n"] == 6 and by[0.2]["recovered"] >= 5
    assert by[0.0005]["recovered"] <= 1
    assert sum(b["n"] for b in s["by_radius"]) == 12
    paths = write_outputs(rows, s, cfg, tmp_path)
    assert paths["png"].stat().st_size > 5000
    assert len(paths["csv"].read_text().strip().splitlines()) == 13


def test_fits_cube_injected_in_flux_units(tmp_path):
    rng = np.random.default_rng(4)
    lin = smooth_galaxy(rng) * 100.0  # flux units
    cube = lin.transpose(2, 0, 1).astype(np.float32)
    hdr = fits.Header()
    for k, b in enumerate("gri", start=1):
        hdr[f"BAND{k}"] = b
    path = tmp_path / "gal.fits"
    fits.PrimaryHDU(cube, header=hdr).writeto(path)
    loaded, kind = load_linear(str(path))
    assert kind == "fits" and np.allclose(loaded, lin, atol=1e-3)
    out = inject(loaded, [(30.5, 60.5)], [[500.0, 400.0, 300.0]], FWHM)
    assert np.allclose(aperture(out - loaded, 30.5, 60.5, 2 * FWHM), [500, 400, 300],
                       rtol=1e-3)
    net = network_input_fn("fits")(out, {})
    assert net.shape == (SIZE, SIZE, 3) and 0 <= net.min() and net.max() <= 255.0 + 1e-3
    rows = run_injection([{"name": "gal", "linear": loaded, "psf_fwhm_px": FWHM}],
                         baseline_detector(), InjectionConfig(flux_fractions=(0.3,), trials=2,
                                                              per_image=2, seed=2),
                         network_input_fn("fits"), show_progress=False)
    assert len(rows) == 4 and sum(r["recovered"] for r in rows) >= 3



def _simulated_png(path):
    """An SDSS-preset galaxy without clumps, written as a PNG; returns the galaxy."""
    from PIL import Image

    from clump_d2.sim.synthetic import SyntheticParams, galaxy_rng, render_galaxy

    g = render_galaxy(galaxy_rng(0, "test", 1), SyntheticParams.sdss(empty_fraction=1.0))
    Image.fromarray(g.rgb).save(path)
    return g


def test_cli_on_png_and_fits(tmp_path, load_tool):
    """tools/inject_recover.py on a simulated SDSS-preset PNG and on a FITS cube, with the
    classical baseline: counts add up and bright clumps are recovered."""
    import json

    tool = load_tool("inject_recover")
    g = _simulated_png(tmp_path / "sim.png")
    cube = (smooth_galaxy(np.random.default_rng(6)) * 100).transpose(2, 0, 1).astype(np.float32)
    hdr = fits.Header()
    for k, b in enumerate("gri", start=1):
        hdr[f"BAND{k}"] = b
    fits.PrimaryHDU(cube, header=hdr).writeto(tmp_path / "gal.fits")
    for name, psf in (("sim.png", g.psf_fwhm_px), ("gal.fits", FWHM)):
        out = tmp_path / f"out_{name}"
        assert tool.main(["--images", str(tmp_path / name), "--psf-fwhm-px", str(psf),
                          "--baseline", "--flux-fractions", "0.1", "0.3", "--trials", "2",
                          "--per-image", "2", "--output-dir", str(out)]) == 0
        s = json.loads((out / "injection_summary.json").read_text())
        assert s["n_injected"] == sum(b["n"] for b in s["by_flux_frac"]) > 0
        bright = s["by_flux_frac"][-1]
        assert bright["recovered"] >= bright["n"] - 1
        assert (out / "injection_recovery.png").stat().st_size > 5000


def test_cli_baseline_colour_cut(tmp_path, load_tool):
    """--baseline-colour reaches the finder: an impossible cut recovers nothing where the
    plain finder recovers the bright clumps; without --baseline it is refused."""
    import json

    tool = load_tool("inject_recover")
    g = _simulated_png(tmp_path / "sim.png")
    common = ["--images", str(tmp_path / "sim.png"), "--psf-fwhm-px", str(g.psf_fwhm_px),
              "--flux-fractions", "0.3", "--trials", "2", "--per-image", "2"]
    recovered = {}
    # the baseline's operating point is TEST.CLUMP_EVAL.SCORE_THRESH (its scores are < 1)
    for label, extra, opts in (("plain", [], []),
                               ("impossible", ["--baseline-colour", "100"], []),
                               ("strict", [], ["TEST.CLUMP_EVAL.SCORE_THRESH", "1.0"])):
        out = tmp_path / label
        assert tool.main(common + ["--baseline", *extra, "--output-dir", str(out), *opts]) == 0
        s = json.loads((out / "injection_summary.json").read_text())
        recovered[label] = s["by_flux_frac"][0]["recovered"]
    assert recovered["plain"] >= 3 and recovered["impossible"] == recovered["strict"] == 0
    with pytest.raises(SystemExit):  # the flag is gone: the threshold is a config key
        tool.main(common + ["--baseline", "--score-thresh", "0.3", "--output-dir",
                            str(tmp_path / "y")])
    with pytest.raises(SystemExit):
        tool.main(common + ["--config-file", "configs/quickstart.yaml", "--baseline-colour", "0",
                            "--output-dir", str(tmp_path / "x")])


def test_injection_config_from_config_is_the_evaluators_operating_point():
    from clump_d2.engine import build_config
    from clump_d2.evaluation import MatchCriterion

    cfg = build_config("configs/quickstart.yaml", ["TEST.CLUMP_EVAL.MATCH", "distance",
                                                   "TEST.CLUMP_EVAL.DISTANCE_FACTOR", "1.5"])
    icfg = InjectionConfig.from_config(cfg, trials=7)
    assert icfg.score_thresh == pytest.approx(0.75) and icfg.trials == 7
    assert icfg.match == MatchCriterion("distance", distance_factor=1.5)


def test_false_detections_outside_injected_clumps_and_ignore_regions():
    """A detector that finds every injected clump plus one detection on the host's ignore
    region and one elsewhere: recovered all, one false detection per trial (the ignore region
    is not false), two unmatched."""
    from clump_d2.structures import clump_box_xyxy
    from clump_d2.studies.injection import summarise_groups

    lin = smooth_galaxy(np.random.default_rng(3), noise=0.02)
    knot = (60.5, 80.5)
    images = [{"name": "g", "linear": lin, "psf_fwhm_px": FWHM, "ignore_xy": [knot],
               "group": "spiral"}]
    cfg = InjectionConfig(flux_fractions=(0.2,), per_image=2, trials=3,
                          radius_r50=(0.8, 1.8), score_thresh=0.5, seed=1)
    base = lin.copy()

    def detector(image, im):
        # injected clumps: where the image differs from the host (display units)
        diff = np.abs(image.astype(float) - network_input_fn("display")(base, im)).sum(axis=2)
        boxes = [clump_box_xyxy(*knot, FWHM), clump_box_xyxy(10.5, 10.5, FWHM)]
        if diff.max() > 0:
            from scipy.ndimage import label, center_of_mass

            lab, n = label(diff > 0.3 * diff.max())
            for cy, cx in center_of_mass(diff, lab, range(1, n + 1)):
                boxes.append(clump_box_xyxy(cx + 0.5, cy + 0.5, FWHM))
        return {"boxes": np.array(boxes), "scores": np.full(len(boxes), 0.9)}

    trials = []
    rows = run_injection(images, detector, cfg, network_input_fn("display"),
                         show_progress=False, trial_rows=trials)
    assert len(rows) == 6 and all(r["group"] == "spiral" for r in rows)
    assert sum(r["recovered"] for r in rows) == 6
    assert [t["n_false"] for t in trials] == [1, 1, 1]
    assert [t["n_unmatched"] for t in trials] == [2, 2, 2]
    # the injections keep clear of the ignore region
    assert min(np.hypot(r["x"] - knot[0], r["y"] - knot[1]) for r in rows) >= 2.5 * FWHM - 1e-6
    groups = summarise_groups(rows, trials, cfg.flux_fractions)
    assert [g["group"] for g in groups] == ["all", "spiral"]
    assert groups[0]["false_per_galaxy"] == 1.0 and groups[0]["unmatched_per_galaxy"] == 2.0
    assert groups[1]["by_flux_frac"][0]["recovered"] == 6


def test_sweep_judges_each_trial_at_every_threshold(tmp_path):
    """Injected clumps detected at score 0.7, a detection on the ignore region at 0.9 and
    one elsewhere at 0.4: at 0.3 every clump is recovered with one false detection per
    trial, at 0.5 with none, at 0.8 nothing is recovered; the table and plot say so."""
    from clump_d2.structures import clump_box_xyxy
    from clump_d2.studies.injection import (summarise_sweep, threshold_within_false_rate,
                                            write_sweep)

    lin = smooth_galaxy(np.random.default_rng(3), noise=0.02)
    knot = (60.5, 80.5)
    images = [{"name": "g", "linear": lin, "psf_fwhm_px": FWHM, "ignore_xy": [knot]}]
    cfg = InjectionConfig(flux_fractions=(0.2,), per_image=2, trials=2,
                          radius_r50=(0.8, 1.8), score_thresh=0.5, seed=1,
                          sweep_threshs=(0.3, 0.5, 0.8))
    base = lin.copy()

    def detector(image, im):
        diff = np.abs(image.astype(float) - network_input_fn("display")(base, im)).sum(axis=2)
        boxes = [clump_box_xyxy(*knot, FWHM), clump_box_xyxy(10.5, 10.5, FWHM)]
        scores = [0.9, 0.4]
        if diff.max() > 0:
            from scipy.ndimage import label, center_of_mass

            lab, n = label(diff > 0.3 * diff.max())
            for cy, cx in center_of_mass(diff, lab, range(1, n + 1)):
                boxes.append(clump_box_xyxy(cx + 0.5, cy + 0.5, FWHM))
                scores.append(0.7)
        return {"boxes": np.array(boxes), "scores": np.array(scores)}

    trials = []
    rows = run_injection(images, detector, cfg, network_input_fn("display"),
                         show_progress=False, trial_rows=trials)
    assert sum(r["recovered"] for r in rows) == 4  # at the operating point 0.5
    assert [t["sweep"] for t in trials] == [[[0.3, 2, 1], [0.5, 2, 0], [0.8, 0, 0]]] * 2
    sweep = summarise_sweep(trials, cfg.flux_fractions)
    assert [e["thresh"] for e in sweep] == [0.3, 0.5, 0.8]
    assert [e["false_per_galaxy"] for e in sweep] == [1.0, 0.0, 0.0]
    assert [e["by_flux_frac"][0]["recovered"] for e in sweep] == [4, 4, 0]
    assert {e["by_flux_frac"][0]["n"] for e in sweep} == {4}
    assert threshold_within_false_rate(sweep, 0.5)["thresh"] == 0.5
    assert threshold_within_false_rate(sweep, 1.0)["thresh"] == 0.3
    assert threshold_within_false_rate(sweep, -0.1) is None
    paths = write_sweep({"toy": {"operating": 0.5, "sweep": sweep}}, tmp_path, "cmd", "cpu")
    md = paths["md"].read_text()
    assert md.startswith("Written by `cmd` on cpu.")
    assert "| toy | 0.50 | yes | 1.000 (4/4) | 0.000 |" in md
    assert "| toy | 0.80 |  | 0.000 (0/4) | 0.000 |" in md
    assert paths["png"].stat().st_size > 5000


def test_cli_real_hosts_per_class_baseline_and_model(tmp_path, load_tool, tiny_model_opts,
                                                     initial_weights):
    """--psf-from-image --group-by parent --ids-from on a tree of host JPEGs: only the listed
    hosts, each class a row, the baseline and a model in one run, one table and one plot."""
    import json

    from PIL import Image

    from clump_d2.sim.synthetic import SyntheticParams, galaxy_rng, render_galaxy

    tool = load_tool("inject_recover")
    params = SyntheticParams.sdss_single_epoch(empty_fraction=1.0, image_size=120)
    for k, cls in enumerate(("spiral", "spiral", "non_spiral", "non_spiral", "spiral")):
        (tmp_path / "hosts" / cls).mkdir(parents=True, exist_ok=True)
        g = render_galaxy(galaxy_rng(0, "test", k), params)
        Image.fromarray(g.rgb).save(tmp_path / "hosts" / cls / f"{100 + k}.jpg", quality=95)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"heldout": ["100", "102", "103"], "train": ["101", "104"]}))
    cfg_file = "configs/quickstart.yaml"
    opts = list(tiny_model_opts(tmp_path / "m"))
    weights = initial_weights(cfg_file, opts, tmp_path / "init.pth")
    out = tmp_path / "out"
    assert tool.main(["--images", str(tmp_path / "hosts" / "*" / "*.jpg"),
                      "--ids-from", f"{split}:heldout", "--crop-size", "96",
                      "--psf-from-image", "--group-by", "parent", "--flux-fractions", "0.1",
                      "0.3", "--trials", "1", "--per-image", "2", "--baseline",
                      "--baseline-thresh", "0.35", "--sweep", "0.2", "0.6",
                      "--config-file", cfg_file, "--weights", str(weights),
                      "--output-dir", str(out), *opts]) == 0
    table = json.loads((out / "injection_table.json").read_text())
    assert "--psf-from-image" in table["command"] and "no GPU" in table["machine"]
    res = table["results"]
    assert len(res) == 2 and "classical baseline" in res
    for groups in res.values():
        assert [g["group"] for g in groups] == ["all", "non_spiral", "spiral"]
        assert [g["n_images"] for g in groups] == [3, 2, 1]
    # Each detector at its own operating point: the baseline's given, the network's the
    # config's.
    from clump_d2.engine import build_config
    model_thresh = float(build_config(cfg_file, opts).TEST.CLUMP_EVAL.SCORE_THRESH)
    assert model_thresh != 0.35
    assert {g["score_thresh"] for g in res["classical baseline"]} == {0.35}
    assert {g["score_thresh"] for g in res[str(weights)]} == {model_thresh}
    bright = res["classical baseline"][0]["by_flux_frac"][-1]
    assert bright["n"] > 0 and bright["recovered"] >= bright["n"] - 1
    md = (out / "injection_table.md").read_text()
    assert md.startswith("Written by `python tools/inject_recover.py") and "non_spiral" in md
    assert "| classical baseline | 0.35 | all | 3 |" in md
    assert (out / "injection_by_group.png").stat().st_size > 5000
    for sub in ("baseline", "model"):
        assert (out / sub / "injections.csv").exists()
    # --sweep: each detector judged at 0.2, 0.6 and its own operating point; at that point
    # the sweep repeats the main table's counts
    sweeps = json.loads((out / "injection_sweep.json").read_text())["sweeps"]
    for name, thresh in (("classical baseline", 0.35), (str(weights), model_thresh)):
        sw = sweeps[name]
        assert sw["operating"] == pytest.approx(thresh)
        assert [e["thresh"] for e in sw["sweep"]] == sorted({0.2, 0.6, round(thresh, 6)})
        at_op = next(e for e in sw["sweep"] if e["thresh"] == pytest.approx(thresh))
        main = res[name][0]
        assert [b["recovered"] for b in at_op["by_flux_frac"]] == \
            [b["recovered"] for b in main["by_flux_frac"]]
        assert at_op["false_per_galaxy"] == pytest.approx(main["false_per_galaxy"])
    assert (out / "injection_sweep.png").exists()
    # the network's lowest threshold no noisier than the baseline at its operating point
    base_false = next(e for e in sweeps["classical baseline"]["sweep"]
                      if e["thresh"] == pytest.approx(0.35))["false_per_galaxy"]
    pick = sweeps[str(weights)]["within_baseline_false_rate"]
    allowed = [e["thresh"] for e in sweeps[str(weights)]["sweep"]
               if e["false_per_galaxy"] <= base_false]
    assert (pick is None and not allowed) or pick["thresh"] == min(allowed)


def test_model_detector_as_catalogue_applies_the_catalogues_postprocessing():
    """--as-catalogue: the detections predict_catalog would list: duplicates within a PSF FWHM
    merged (the higher score kept), and with INFERENCE.DROP_BULGE the one on the image centre
    dropped; without it, every raw detection."""
    import torch
    from detectron2.structures import Boxes, Instances

    from clump_d2.engine import build_config
    from clump_d2.structures import clump_box_xyxy
    from clump_d2.studies.injection import model_detector

    fwhm = 4.0
    raw = [(50.0, 50.0, 0.9), (20.0, 30.0, 0.8), (21.0, 30.5, 0.6), (80.0, 70.0, 0.7)]

    class Fixed(torch.nn.Module):
        def forward(self, batched):
            h, w = batched[0]["height"], batched[0]["width"]
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(torch.tensor([clump_box_xyxy(x, y, fwhm) for x, y, _ in raw],
                                                 dtype=torch.float32))
            inst.scores = torch.tensor([s for _, _, s in raw])
            inst.pred_classes = torch.zeros(len(raw), dtype=torch.int64)
            return [{"instances": inst}]

    image = np.zeros((100, 100, 3), np.float32)
    im = {"psf_fwhm_px": fwhm}
    cfg = build_config("configs/quickstart.yaml", ["INFERENCE.DROP_BULGE", "True"])
    plain = model_detector(cfg, Fixed())(image, im)
    assert sorted(plain["scores"].tolist()) == pytest.approx([0.6, 0.7, 0.8, 0.9])
    listed = model_detector(cfg, Fixed(), as_catalogue=True)(image, im)
    assert sorted(listed["scores"].tolist()) == pytest.approx([0.7, 0.8])  # merged, no bulge
    centres = (listed["boxes"][:, :2] + listed["boxes"][:, 2:]) / 2
    assert sorted(map(tuple, np.round(centres, 3).tolist())) == [(20.0, 30.0), (80.0, 70.0)]
    flagged_only = build_config("configs/quickstart.yaml", [])  # DROP_BULGE False: kept
    kept = model_detector(flagged_only, Fixed(), as_catalogue=True)(image, im)
    assert sorted(kept["scores"].tolist()) == pytest.approx([0.7, 0.8, 0.9])


def test_cli_refuses_bad_numbers_and_names_a_broken_ids_file(tmp_path, load_tool, capsys):
    """Negative flux fractions or PSF widths ran (on nonsense); a broken --ids-from JSON gave a
    bare JSONDecodeError. Now argparse refuses the numbers (exit 2, naming option and value)
    and the JSON error names the file, line and column."""
    from PIL import Image

    tool = load_tool("inject_recover")
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    base = ["--images", str(tmp_path / "*.png"), "--baseline", "--output-dir",
            str(tmp_path / "out")]
    for bad, what in ((["--flux-fractions", "0.1", "-0.05"],
                       "argument --flux-fractions: '-0.05' is not a number > 0"),
                      (["--psf-fwhm-px", "-2"], "argument --psf-fwhm-px: '-2' is not a number > 0"),
                      (["--psf-fwhm-px", "nan"], "'nan' is not a number > 0"),
                      (["--trials", "0"], "argument --trials: '0' is not an integer >= 1"),
                      (["--sweep", "1.5"], "argument --sweep: '1.5' is not a number in [0, 1]")):
        with pytest.raises(SystemExit) as e:
            tool.main(base + bad)
        assert e.value.code == 2 and what in capsys.readouterr().err
    ids = tmp_path / "split.json"
    for text, what in (('{"heldout": ["a",\n "b"', f"--ids-from: {ids}: not valid JSON at line "
                                                   "2 column 5"),
                       ('{"train": ["a"]}', f"--ids-from: {ids}: no key 'heldout' (the file "
                                            "holds ['train'])")):
        ids.write_text(text)
        with pytest.raises(SystemExit) as e:
            tool.main(base + ["--psf-fwhm-px", "3", "--ids-from", f"{ids}:heldout"])
        assert e.value.code == 2 and what in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
