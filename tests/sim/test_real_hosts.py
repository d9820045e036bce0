"""Simulated clumps injected into real-looking hosts: where, how bright, split by host."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clump_d2.data.stretch import DisplayStretch
from clump_d2.sim.real_hosts import (
    RealHostParams,
    colour_factors,
    inject_version,
    make_real_host_dataset,
    prepare_host,
    split_hosts,
)

SIZE = 96


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, write_host_jpegs):
    """Six host JPEGs (two classes) rendered by the SDSS preset, without labels."""
    return write_host_jpegs(tmp_path_factory.mktemp("hosts"), 6, seed=3, first_id=1000,
                            size=SIZE)


PARAMS = RealHostParams(crop_size=80, versions_per_host=2, empty_fraction=0.0,
                        clump_count_probs=(0.0, 1.0), seed=1)


def test_split_by_host_is_a_partition():
    ids = [f"h{k}" for k in range(50)]
    s = split_hosts(ids, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    assert sorted(sum(s.values(), [])) == sorted(ids)
    assert [len(v) for v in s.values()] == [35, 5, 10]
    assert s == split_hosts(list(reversed(ids)), {"train": 0.7, "val": 0.1, "test": 0.2}, 0)


def test_splits_from_lists():
    from clump_d2.sim.real_hosts import splits_from_lists

    ids = ["spiral/1", "spiral/2", "non_spiral/3", "non_spiral/4"]
    out = splits_from_lists(ids, {"train": ["1", "non_spiral/3"], "test": ["2"]})
    assert out == {"train": ["non_spiral/3", "spiral/1"], "test": ["spiral/2"]}
    with pytest.raises(ValueError, match="both"):
        splits_from_lists(ids, {"train": ["1"], "test": ["spiral/1"]})
    with pytest.raises(ValueError, match="not a host"):
        splits_from_lists(ids, {"train": ["9"]})


def test_colour_factors():
    r, g, b = colour_factors(-0.5, 0.0)  # 0.5 mag bluer in g - r
    assert g == 1.0 and np.isclose(b, 10 ** 0.2) and np.isclose(r, 1.0)


def test_injected_clumps_have_the_requested_flux(hosts):
    path = sorted(hosts.rglob("*.jpg"))[0]
    prep = prepare_host(path, "non_spiral/1000", PARAMS)
    rgb, clumps = inject_version(prep, 0, PARAMS)
    assert len(clumps) == 2 and rgb.shape == (80, 80, 3)
    # Linear difference with the host, measured in a 2-FWHM aperture: the requested flux.
    disp = DisplayStretch(PARAMS.q)
    rng = np.random.default_rng(0)
    diff = disp.linearise(rgb, rng) - disp.linearise(prep.rgb, np.random.default_rng(0))
    yy, xx = np.mgrid[0:80, 0:80] + 0.5
    host_r = prep.host["flux"][1]
    for c in clumps:
        ap = np.hypot(xx - c["x"], yy - c["y"]) < 2 * prep.fwhm
        measured = diff[ap, 1].sum() / host_r
        assert measured == pytest.approx(c["flux_frac"], rel=0.25)
        assert 0.03 <= c["flux_frac"] <= 0.15


def test_wide_clumps_have_the_requested_width_and_flux(hosts):
    """width_psf: each clump a Gaussian of its own FWHM (its second moment says so), the same
    flux; (1, 1) draws nothing, so older datasets keep their clumps."""
    from dataclasses import replace

    path = sorted(hosts.rglob("*.jpg"))[0]
    prep = prepare_host(path, "non_spiral/1000", PARAMS)
    one = replace(PARAMS, clump_count_probs=(1.0,))  # no neighbour's light in the aperture
    wide = replace(one, width_psf=(1.8, 2.0))
    rgb, clumps = inject_version(prep, 0, wide)
    assert len(clumps) == 1
    disp = DisplayStretch(PARAMS.q)
    diff = (disp.linearise(rgb, np.random.default_rng(0))
            - disp.linearise(prep.rgb, np.random.default_rng(0)))[..., 1]
    yy, xx = np.mgrid[0:80, 0:80] + 0.5
    for c in clumps:
        assert 1.8 * prep.fwhm <= c["fwhm_px"] <= 2.0 * prep.fwhm
        r = np.hypot(xx - c["x"], yy - c["y"])
        ap = r < 1.2 * c["fwhm_px"]
        w = np.clip(diff[ap], 0, None)
        sigma = np.sqrt((w * r[ap] ** 2).sum() / w.sum() / 2)
        # (the aperture cuts the wings, the 8-bit display adds its steps)
        assert sigma == pytest.approx(c["fwhm_px"] / 2.3548, rel=0.15)
        assert sigma > 1.4 * prep.fwhm / 2.3548  # wider than a point-like clump could be
        flux = diff[r < 2 * c["fwhm_px"]].sum() / prep.host["flux"][1]
        assert flux == pytest.approx(c["flux_frac"], rel=0.25)
    _, point = inject_version(prep, 0, one)
    assert [c["fwhm_px"] for c in point] == [prep.fwhm]


def test_dataset_written_deterministically(hosts, tmp_path):
    out_a = make_real_host_dataset(hosts, tmp_path / "a", {"train": 0.5, "test": 0.5}, PARAMS,
                                   show_progress=False)
    out_b = make_real_host_dataset(hosts, tmp_path / "b", {"train": 0.5, "test": 0.5}, PARAMS,
                                   show_progress=False)
    assert set(out_a) == {"train", "test"}
    hosts_by_split = {}
    for split, path in out_a.items():
        coco = json.loads(path.read_text())
        assert coco["images"] and len(coco["images"]) == 2 * 3  # 3 hosts x 2 versions
        assert json.loads(out_b[split].read_text())["annotations"] == coco["annotations"]
        hosts_by_split[split] = {im["host_id"] for im in coco["images"]}
        real = [a for a in coco["annotations"] if not a["iscrowd"]]
        crowd = [a for a in coco["annotations"] if a["iscrowd"]]
        assert len(real) == 2 * len(coco["images"])  # two clumps per version
        assert all(a["ignore_reason"] == "host_knot" for a in crowd)
        for im in coco["images"]:
            assert im["psf_source"] in ("stars", "prior") and im["psf_fwhm_px"] > 0
            assert (tmp_path / "a" / "images" / im["file_name"]).is_file()
            knots = [(a["x"], a["y"]) for a in crowd if a["image_id"] == im["id"]]
            for a in real:
                if a["image_id"] == im["id"]:
                    for kx, ky in knots:  # injections keep away from the host's knots
                        assert np.hypot(a["x"] - kx, a["y"] - ky) >= \
                            PARAMS.sep_fwhm * im["psf_fwhm_px"] - 1e-6
    assert not hosts_by_split["train"] & hosts_by_split["test"]


def test_psf_measured_on_the_whole_image_when_asked(tmp_path):
    """A star outside the crop: psf_full_image finds it (FWHM within 25 %), the crop alone
    falls back to the prior."""
    rng = np.random.default_rng(0)
    size, fwhm = 160, 5.0
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    grey = 20.0 + rng.normal(0, 3.0, (size, size))  # sky, 3 grey levels of noise
    grey += 150.0 * np.exp(-np.hypot(xx - 80, yy - 80) / 8.0)  # the galaxy in the centre
    s = fwhm / 2.3548
    grey += 120.0 * np.exp(-((xx - 20.3) ** 2 + (yy - 22.7) ** 2) / (2 * s * s))  # the star
    rgb = np.repeat(np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    (tmp_path / "c").mkdir()
    Image.fromarray(rgb).save(tmp_path / "c" / "1.png")
    crop_only = prepare_host(tmp_path / "c" / "1.png", "c/1", RealHostParams(crop_size=80))
    full = prepare_host(tmp_path / "c" / "1.png", "c/1",
                        RealHostParams(crop_size=80, psf_full_image=True))
    assert crop_only.psf_source == "prior"
    assert full.psf_source == "stars" and full.fwhm == pytest.approx(fwhm, rel=0.25)
    assert full.rgb.shape == (80, 80, 3) and np.array_equal(full.rgb, crop_only.rgb)


def test_tool_pretrain_holdout_equals_the_pretraining_split(tmp_path, load_tool,
                                                          write_host_jpegs):
    """--pretrain-holdout makes the split a pretraining run would (its held-out galaxies are
    the test hosts), writes it beside the dataset, and gives the same dataset as passing that
    run's split.json."""
    from clump_d2.pretrain.images import list_image_folder, split_by_galaxy, write_split

    hosts = write_host_jpegs(tmp_path / "hosts", 8, 3, 500, size=200)
    tool = load_tool("make_real_hosts")
    depth = ["--clump-frac", "0.02", "0.04", "--psf-full-image"]
    a = tool.main(["--hosts", str(hosts), "--out", str(tmp_path / "a"), "--versions", "1",
                   "--pretrain-holdout", "0.25", "--val", "2", *depth])
    expected = split_by_galaxy(list_image_folder(str(hosts))[0], 0.25, 0)
    written = json.loads((tmp_path / "a" / "split.json").read_text())
    assert written["heldout"] == expected["heldout"] and len(expected["heldout"]) == 2
    assert written["holdout_fraction"] == 0.25
    test_hosts = {Path(im["host_id"]).name
                  for im in json.loads(a["test"].read_text())["images"]}
    assert test_hosts == set(expected["heldout"])
    val_hosts = {Path(im["host_id"]).name for im in json.loads(a["val"].read_text())["images"]}
    assert len(val_hosts) == 2 and not val_hosts & test_hosts
    # the host lists of every split, beside the dataset (inject_recover --ids-from hosts.json:val)
    lists = json.loads((tmp_path / "a" / "hosts.json").read_text())
    assert lists["val"] == sorted(val_hosts) and lists["test"] == sorted(test_hosts)
    assert lists["train"] == sorted({Path(im["host_id"]).name for im in json.loads(
        a["train"].read_text())["images"]})
    write_split(expected, str(tmp_path / "pre"))
    b = tool.main(["--hosts", str(hosts), "--out", str(tmp_path / "b"), "--versions", "1",
                   "--split-json", str(tmp_path / "pre" / "split.json"), "--val", "2", *depth])
    fracs = []
    for split in ("train", "val", "test"):
        anns = json.loads(a[split].read_text())["annotations"]
        assert anns == json.loads(b[split].read_text())["annotations"]
        fracs += [x["flux_frac"] for x in anns if not x["iscrowd"]]
    # --clump-frac sets the injected population's depth
    assert fracs and min(fracs) >= 0.02 * 0.999 and max(fracs) <= 0.04 * 1.001
    # --bulge-fwhm, --radius-r50 and --width-psf set where and how wide the clumps are
    c = tool.main(["--hosts", str(hosts), "--out", str(tmp_path / "c"), "--versions", "2",
                   "--pretrain-holdout", "0.25", "--val", "2", *depth, "--bulge-fwhm", "0.5",
                   "--radius-r50", "0.2", "0.4", "--width-psf", "1.5", "1.6"])
    coco = json.loads(c["train"].read_text())
    params = coco["info"]["params"]
    assert (params["bulge_fwhm"], params["radius_r50"], params["width_psf"]) == \
        (0.5, [0.2, 0.4], [1.5, 1.6])
    images = {im["id"]: im for im in coco["images"]}
    injected = [x for x in coco["annotations"] if "flux_frac" in x]
    assert injected
    for x in injected:
        im = images[x["image_id"]]
        assert 0.2 <= x["distance_r50"] <= 0.4
        assert np.hypot(x["x"] - im["centre_x"], x["y"] - im["centre_y"]) >= \
            0.5 * im["psf_fwhm_px"] - 1e-9
        assert 1.5 * im["psf_fwhm_px"] - 1e-9 <= x["clump_fwhm_px"] <= 1.6 * im["psf_fwhm_px"]
    with pytest.raises(SystemExit):
        tool.main(["--hosts", str(hosts), "--out", str(tmp_path / "c"), "--pretrain-holdout",
                   "0.25", "--split-json", str(tmp_path / "pre" / "split.json")])


def test_split_names_and_numbers_are_checked_before_anything_is_written(tmp_path, load_tool,
                                                                        capsys):
    """``--fractions ../../x=1`` wrote ``<out>/annotations/../../x.json`` outside --out, and a
    negative --clump-frac ran; both are refused (argparse, exit 2, naming the option), and the
    library refuses the name too."""
    from clump_d2.sim.real_hosts import make_real_host_dataset

    (tmp_path / "hosts").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "hosts" / "h.png")
    tool = load_tool("make_real_hosts")
    out = tmp_path / "a" / "out"
    for bad, what in ((["--fractions", "../../x=1"], "is not a plain split name"),
                      (["--fractions", "train=1.5"], "'1.5' is not a number in [0, 1]"),
                      (["--clump-frac", "-0.1", "0.2"], "'-0.1' is not a number > 0"),
                      (["--versions", "0"], "'0' is not an integer >= 1"),
                      (["--radius-r50", "2", "1"], "--radius-r50: LO 2.0 > HI 1.0"),
                      (["--width-psf", "2", "1"], "--width-psf: LO 2.0 > HI 1.0"),
                      (["--bulge-fwhm", "-1"], "'-1' is not a number >= 0")):
        with pytest.raises(SystemExit) as e:
            tool.main(["--hosts", str(tmp_path / "hosts"), "--out", str(out), *bad])
        assert e.value.code == 2 and what in capsys.readouterr().err
    with pytest.raises(ValueError, match="is not a plain split name"):
        make_real_host_dataset(tmp_path / "hosts", out, {"../x": 1.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts"]


def test_hostile_hosts_are_skipped_named_and_counted(hosts, tmp_path, caplog):
    """Decompression bombs (12000 x 12000 in 115 bytes; 20000 x 20000, over Pillow's own
    limit, which stopped the whole build), a host whose pixel data stop after 20 rows, and a
    1 x 1 image: each skipped, named in the log and in the split's ``skipped_hosts``; the good
    hosts are written."""
    import logging
    import shutil

    from image_helpers import write_png

    folder = tmp_path / "hosts"
    shutil.copytree(hosts, folder)
    write_png(folder / "bad" / "bomb.png", 12000, 12000, rows=1)
    write_png(folder / "bad" / "bomb20k.png", 20000, 20000, rows=1)
    write_png(folder / "bad" / "half.png", SIZE, SIZE, rows=20)
    write_png(folder / "bad" / "dot.png", 1, 1)
    with caplog.at_level(logging.INFO):
        written = make_real_host_dataset(folder, tmp_path / "out", {"train": 1.0},
                                         RealHostParams(crop_size=80, versions_per_host=1),
                                         show_progress=False)
    coco = json.loads(written["train"].read_text())
    assert sorted({im["host_id"] for im in coco["images"]}) == sorted(
        f"{p.parent.name}/{p.stem}" for p in hosts.rglob("*.jpg"))
    skipped = {s["host_id"]: s for s in coco["info"]["skipped_hosts"]}
    assert sorted(skipped) == ["bad/bomb", "bad/bomb20k", "bad/dot", "bad/half"]
    assert "12000 x 12000 = 144.0 Mpx > INPUT.MAX_PIXELS" in skipped["bad/bomb"]["reason"]
    assert "decompression-bomb limit" in skipped["bad/bomb20k"]["reason"]
    assert "truncated PNG: its pixel data ends after row 20 of 96" in skipped["bad/half"]["reason"]
    assert "1 x 1 px is smaller than 16 px" in skipped["bad/dot"]["reason"]
    for hid, entry in skipped.items():
        assert entry["file"] == str(folder / f"{hid}.png")
        assert f"host {hid} ({folder / hid}.png) skipped" in caplog.text
    assert "train: 10 hosts (4 skipped), 6 images" in caplog.text


def test_16bit_host_is_scaled_not_clipped(tmp_path):
    """A 16-bit grey host is read as the network reads it (scaled to 0..255), so its crop
    equals that of its own 8-bit version; read as 8 bits it was clipped to a white square."""
    yy, xx = np.mgrid[0:120, 0:120] + 0.5
    grey16 = np.round(60000 * np.exp(-np.hypot(xx - 60, yy - 60) / 12.0) + 2000).astype(
        np.uint16)
    (tmp_path / "h").mkdir()
    Image.fromarray(grey16).save(tmp_path / "h" / "16.png")
    grey8 = np.round(grey16 * (255 / 65535)).astype(np.uint8)
    Image.fromarray(np.repeat(grey8[..., None], 3, 2)).save(tmp_path / "h" / "8.png")
    params = RealHostParams(crop_size=80)
    deep = prepare_host(tmp_path / "h" / "16.png", "h/16", params)
    flat = prepare_host(tmp_path / "h" / "8.png", "h/8", params)
    assert deep.rgb.dtype == np.uint8 and deep.rgb.shape == (80, 80, 3)
    assert np.abs(deep.rgb.astype(int) - flat.rgb.astype(int)).max() <= 1
    assert deep.rgb.max() == round(int(grey16.max()) * 255 / 65535) == 228  # the peak kept...
    assert np.median(deep.rgb) < 60  # ...and the host not a saturated blob


def test_tool_two_files_of_one_host_name_both_and_max_pixels_flag(tmp_path, load_tool):
    """``4000.png`` and ``4000.jpg`` in one folder are an error naming both (the check the
    catalogue's folder input makes); ``--max-pixels`` bounds the hosts the tool reads."""
    from image_helpers import write_png

    tool = load_tool("make_real_hosts")
    write_png(tmp_path / "dup" / "spiral" / "4000.png", 210, 210)
    write_png(tmp_path / "dup" / "spiral" / "4000.jpg", 210, 210)
    with pytest.raises(ValueError) as e:
        tool.main(["--hosts", str(tmp_path / "dup"), "--out", str(tmp_path / "o1")])
    msg = str(e.value)
    assert str(tmp_path / "dup" / "spiral" / "4000.png") in msg
    assert str(tmp_path / "dup" / "spiral" / "4000.jpg") in msg and "galaxy id 'spiral/4000'" in msg
    assert not (tmp_path / "o1").exists()

    write_png(tmp_path / "one" / "4001.png", 210, 210)
    written = tool.main(["--hosts", str(tmp_path / "one"), "--out", str(tmp_path / "o2"),
                         "--fractions", "train=1", "--max-pixels", "44099"])
    info = json.loads(Path(written["train"]).read_text())["info"]
    assert info["params"]["max_pixels"] == 44099
    assert "210 x 210 = 0.0 Mpx > INPUT.MAX_PIXELS = 44099" in info["skipped_hosts"][0]["reason"]
