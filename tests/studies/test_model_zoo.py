"""The model zoo end to end on a tiny model: packaging a checkpoint into an entry (float16 only
when the held-out figures do not move), loading it by name everywhere a model is built (with
its sha256 checked), the errors for corrupted and missing weights, the card check, the
resumable rebuild, and the catalogue tool with --model and a contact sheet."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from clump_d2 import model_zoo
from clump_d2.engine import build_config, build_model_for_inference
from clump_d2.modeling.checkpoint import ClumpCheckpointer
from clump_d2.studies import model_zoo as zoo_study
from clump_d2.studies.injection import write_group_comparison

REPO = Path(__file__).resolve().parents[2]


def _figures(r1=0.6, r3=0.95, false=0.02):
    return {"images": 10, "score_thresh": 0.5, "false_per_galaxy": false,
            "recovered": {"0.01": {"fraction": r1, "recovered": 6, "n": 10},
                          "0.03": {"fraction": r3, "recovered": 19, "n": 20}},
            "by_group": {}, "command": "python tools/inject_recover.py ...",
            "machine": "test machine"}


@pytest.fixture
def tiny_recipe(tiny_synthetic, tiny_model_opts, tmp_path, monkeypatch):
    """A recipe ``tiny`` for the tiny quickstart model, and a zoo folder on $CLUMP_D2_ZOO."""
    opts = [o for o in tiny_model_opts(tmp_path / "train")]
    i = opts.index("OUTPUT_DIR")
    opts = tuple(opts[:i] + opts[i + 2:])
    recipe = zoo_study.Recipe(
        name="tiny", title="a tiny test model", source_config="configs/quickstart.yaml",
        steps=(zoo_study.Step("datasets/never_there.json", ("tools/make_data.py", "{shared}/x")),),
        heldout_argv=("tools/inject_recover.py", "--images", "{shared}/*.jpg"),
        heldout_description="test figures", operating_point_how="by hand",
        training_data="tinysim", data_licence="Apache-2.0", config_opts=opts)
    monkeypatch.setitem(zoo_study.RECIPES, "tiny", recipe)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    monkeypatch.setenv("CLUMP_D2_ZOO", str(zoo))
    return recipe, zoo


@pytest.fixture
def tiny_checkpoint(tiny_recipe, initial_weights, tmp_path):
    recipe, _ = tiny_recipe
    return initial_weights(str(REPO / recipe.source_config), list(recipe.config_opts),
                           tmp_path / "train" / "model_final.pth")


def test_package_ships_float16_that_loads_by_name_everywhere(tiny_recipe, tiny_checkpoint):
    recipe, zoo = tiny_recipe
    folder = zoo_study.package("tiny", tiny_checkpoint, _figures(), _figures(r3=0.953),
                               dest_root=str(zoo), training={"seconds": 125.0,
                                                             "machine": "test machine"})
    card = json.loads((folder / "card.json").read_text())
    assert card["weights"]["dtype"] == "float16"
    # the card's figures are the shipped (float16) weights'; float32's are kept beside them
    assert card["heldout"]["figures"]["recovered"]["0.03"]["fraction"] == 0.953
    assert card["precision"]["fp32_figures"]["recovered"]["0.03"]["fraction"] == 0.95
    assert card["weights"]["sha256"] == model_zoo.sha256_file(folder / "model.safetensors")
    assert card["precision"]["largest_change_fp16_vs_fp32"] == pytest.approx(0.003)
    assert card["training"]["datasets"]["tinysim_train"]["images"] == 12
    assert len(card["training"]["datasets"]["tinysim_train"]["sha256"]) == 64
    assert model_zoo.list_models().count("tiny") == 1
    assert "zoo:tiny" in (folder / "config.yaml").read_text()
    text = (folder / "MODEL_CARD.md").read_text()
    assert "0.953 (19/20)" in text and "training time: 2 min" in text

    # --model tiny == --config-file zoo:tiny: the entry's own config and its weights
    cfg = build_config("zoo:tiny", ["MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.WEIGHTS == "zoo:tiny" and cfg.MODEL.FPN.OUT_CHANNELS == 32
    model = build_model_for_inference(cfg)
    saved = torch.load(tiny_checkpoint, weights_only=True)["model"]
    state = model.state_dict()
    for key, value in saved.items():
        if value.is_floating_point() and key.split(".")[-1] not in ("pixel_mean", "pixel_std"):
            assert torch.allclose(state[key], value.half().float()), key
    # the bare name is accepted too, and loads every weight
    checkpointer = ClumpCheckpointer(model, require_weights=True)
    checkpointer.load("tiny")
    assert checkpointer.last_load["missing"] == 0 and checkpointer.last_load["loaded"] > 50


def test_figures_that_move_ship_float32(tiny_recipe, tiny_checkpoint):
    _, zoo = tiny_recipe
    moved = _figures(r3=0.94)  # 0.01 more than allowed (0.005)
    folder = zoo_study.package("tiny", tiny_checkpoint, _figures(), moved, dest_root=str(zoo))
    card = json.loads((folder / "card.json").read_text())
    assert card["weights"]["dtype"] == "float32"
    assert card["heldout"]["figures"]["recovered"]["0.03"]["fraction"] == 0.95
    assert card["precision"]["largest_change_fp16_vs_fp32"] == pytest.approx(0.01)
    tensors = zoo_study.read_model_state(folder / "model.safetensors")
    assert all(t.dtype != torch.float16 for t in tensors.values())


def test_corrupted_or_missing_weights_are_refused(tiny_recipe, tiny_checkpoint):
    _, zoo = tiny_recipe
    folder = zoo_study.package("tiny", tiny_checkpoint, _figures(), None, dest_root=str(zoo))
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(model_zoo.ZooWeightsMismatchError, match="card.json"):
        model_zoo.resolve_weights("zoo:tiny")
    weights.unlink()
    with pytest.raises(model_zoo.ZooWeightsMissingError,
                       match="python tools/model_zoo.py rebuild tiny"):
        model_zoo.resolve_weights("tiny")


def test_names_and_paths(tiny_recipe, tiny_checkpoint, tmp_path, monkeypatch):
    _, zoo = tiny_recipe
    zoo_study.package("tiny", tiny_checkpoint, _figures(), None, dest_root=str(zoo))
    assert model_zoo.is_zoo_name("zoo:tiny") and model_zoo.is_zoo_name("tiny")
    assert not model_zoo.is_zoo_name("nothing_of_that_name")
    assert model_zoo.resolve_weights("some/file.pth") == "some/file.pth"
    # what a catalogue's manifest and batch evaluation record: the card's checksum, so that
    # resuming with re-packaged weights under the same name is noticed
    from clump_d2.inference.predict import _weights_identity

    sha = model_zoo.get_entry("tiny").sha256
    assert _weights_identity("zoo:tiny") == {"zoo": "tiny", "sha256": sha}
    assert model_zoo.zoo_identity("some/file.pth") is None
    monkeypatch.chdir(tmp_path)
    Path("tiny").write_text("a file called tiny")  # an existing path always means the path
    assert not model_zoo.is_zoo_name("tiny") and model_zoo.resolve_weights("tiny") == "tiny"
    with pytest.raises(model_zoo.ModelZooError, match=r"known: .*tiny"):
        model_zoo.get_entry("zoo:nothing_of_that_name")
    with pytest.raises(model_zoo.ModelZooError, match="not a model-zoo name"):
        model_zoo.get_entry("../escape")


def test_compare_to_card_and_figures_move():
    card, tol = _figures(), {"recovered": 0.03, "false_per_galaxy": 0.02}
    rows = zoo_study.compare_to_card(card, _figures(r1=0.57, r3=0.99, false=0.04), tol)
    assert [r["meets"] for r in rows] == [True, False, True]  # 0.99 is 0.04 above 0.95
    assert rows[1]["figure"] == "recovered at 0.03" and rows[1]["measured"] == 0.99
    rows = zoo_study.compare_to_card(card, _figures(false=0.041), tol)
    assert rows[-1]["meets"] is False  # 0.021 more false detections than the card
    assert zoo_study.compare_to_card(card, _figures(false=0.0), tol)[-1]["meets"]
    assert zoo_study.figures_move(card, _figures(r1=0.61, false=0.025), 0.005) == \
        pytest.approx(0.01)


def test_read_heldout_figures_from_the_injection_table(tmp_path):
    def entry(group, fracs, false):
        return {"group": group, "n_images": 4, "score_thresh": 0.65, "false_per_galaxy": false,
                "unmatched_per_galaxy": false,
                "by_flux_frac": [{"flux_frac": f, "fraction": k / n, "recovered": k, "n": n,
                                  "low": 0.0, "high": 1.0} for f, k, n in fracs]}
    results = {"model": [entry("all", [(0.01, 3, 6), (0.1, 6, 6)], 0.25),
                         entry("spiral", [(0.01, 1, 3), (0.1, 3, 3)], 0.5)]}
    write_group_comparison(results, tmp_path, "python tools/inject_recover.py x", "machine m")
    figures = zoo_study.read_heldout_figures(tmp_path)
    assert figures["recovered"] == {"0.01": {"fraction": 0.5, "recovered": 3, "n": 6},
                                    "0.1": {"fraction": 1.0, "recovered": 6, "n": 6}}
    assert figures["false_per_galaxy"] == 0.25 and figures["images"] == 4
    assert figures["by_group"]["spiral"]["recovered"]["0.01"] == pytest.approx(1 / 3, abs=1e-4)
    assert figures["command"].endswith("x") and figures["machine"] == "machine m"


def test_rebuild_runs_missing_steps_and_resumes_training(tiny_recipe, tmp_path):
    calls = []

    def fake_run(argv, cwd):
        calls.append(list(argv))
        if argv[0] == "tools/train_net.py":
            out = Path(argv[argv.index("OUTPUT_DIR") + 1])
            (out / "model_final.pth").write_bytes(b"x")
        return 1.5

    out = tmp_path / "rebuilt"
    final = zoo_study.rebuild("tiny", out, shared="/data/real", run=fake_run)
    assert final == out / "model_final.pth"
    assert calls[0] == ["tools/make_data.py", "/data/real/x"]  # {shared} filled in
    train = calls[1]
    assert train[:5] == ["tools/train_net.py", "--config-file", "configs/quickstart.yaml",
                         "--resume", "MODEL.DEVICE"]
    assert train[-4:] == ["OUTPUT_DIR", str(out), "SOLVER.PROGRESS_BAR", "True"]
    record = json.loads((out / "rebuild.json").read_text())
    assert record["train"]["seconds"] == 1.5 and not record["train"]["skipped"]
    # a second rebuild finds the model: training skipped (the data step still missing runs)
    calls.clear()
    zoo_study.rebuild("tiny", out, shared="/data/real", run=fake_run)
    assert [c[0] for c in calls] == ["tools/make_data.py"]
    assert json.loads((out / "rebuild.json").read_text())["train"]["skipped"] is True


def test_training_time_from_log(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("[12/07 19:35] d2.engine.hooks]: Total training time: 0:25:13 (0:00:40 "
                   "on hooks)\n")
    assert zoo_study.training_time_from_log(log) == 25 * 60 + 13
    log.write_text("Total training time: 1 day, 2:00:01\n")
    assert zoo_study.training_time_from_log(log) == 26 * 3600 + 1
    assert zoo_study.training_time_from_log(tmp_path / "none.txt") is None


def test_catalogue_by_model_name_with_contact_sheet(tiny_recipe, tiny_checkpoint,
                                                    tiny_synthetic, tmp_path, load_tool):
    _, zoo = tiny_recipe
    zoo_study.package("tiny", tiny_checkpoint, _figures(), None, dest_root=str(zoo))
    tool = load_tool("predict_catalog")
    out = tmp_path / "cat" / "clumps.csv"
    sheet = tmp_path / "cat" / "sheet.jpg"
    threads = torch.get_num_threads()
    try:
        tool.main(["--model", "tiny", "--input", str(tiny_synthetic / "images" / "val"),
                   "--output", str(out), "--no-progress", "--no-photometry",
                   "--contact-sheet", str(sheet), "MODEL.DEVICE", "cpu",
                   "TEST.CLUMP_EVAL.SCORE_THRESH", "0.0", "INFERENCE.CPU_THREADS", "1"])
    finally:
        torch.set_num_threads(threads)
    cat = pd.read_csv(out)
    assert cat["galaxy_id"].nunique() == 6 and (cat["clump_id"] > 0).sum() > 0
    image = np.asarray(Image.open(sheet))
    # 6 panels of 96 px images drawn at scale 2 under an 18 px caption, 3 x 2, 6 px padding
    assert image.shape == (2 * (2 * 96 + 18) + 3 * 6, 3 * 2 * 96 + 4 * 6, 3)  # scale 2
    with pytest.raises(SystemExit, match="not both"):
        tool.main(["--model", "tiny", "--config-file", "x.yaml", "--input", "y"])


def test_package_carries_the_heldout_selection_function(tiny_recipe, tiny_checkpoint, tmp_path):
    """The held-out measurement's selection function (made from its injections when an older
    measurement wrote none) goes into the entry, its card and its config, so the catalogue of
    ``--model tiny`` reads it; packaging without one removes the old table."""
    from clump_d2.evaluation.selection import resolve_selection_function
    from clump_d2.studies.injection import InjectionConfig, summarise, write_outputs

    _, zoo = tiny_recipe
    fluxes, edges = (0.01, 0.1), [0.3, 0.7, 2.0]
    rows = [{"image": f"im{k}", "group": ("spiral", "non_spiral")[k % 2], "flux_frac": f,
             "distance_r50": d, "recovered": k < n}
            for f, d, n in ((0.01, 0.5, 1), (0.01, 1.5, 2), (0.1, 0.5, 3), (0.1, 1.5, 4))
            for k in range(4)]
    heldout = tmp_path / "heldout"
    icfg = InjectionConfig(flux_fractions=fluxes, radius_r50=(0.3, 2.0), score_thresh=0.5)
    paths = write_outputs(rows, summarise(rows, fluxes, edges), icfg, heldout)
    written = paths["selection_csv"].read_bytes()
    assert paths["selection_csv"] == heldout / "selection_function.csv"
    paths["selection_csv"].unlink()  # as an older measurement left it: remade from injections
    table = zoo_study.heldout_selection_function(heldout)
    assert table == heldout / "selection_function.csv" and table.read_bytes() == written
    assert zoo_study.heldout_selection_function(tmp_path / "nothing") is None

    folder = zoo_study.package("tiny", tiny_checkpoint, _figures(), None, dest_root=str(zoo),
                               selection_function=table)
    card = json.loads((folder / "card.json").read_text())
    assert card["selection_function"] == "selection_function.csv"
    assert (folder / "selection_function.csv").read_bytes() == written
    summary = card["selection_function_summary"]
    assert summary["band"] == "r" and summary["score_thresh"] == 0.5
    assert summary["by_radius_all_hosts"]["0.3-0.7"]["0.1"] == {"fraction": 0.75,
                                                                "recovered": 3, "n": 4}
    assert summary["by_group_all_radii"]["spiral"]["0.01"]["n"] == 4
    cfg = build_config("zoo:tiny", ["MODEL.DEVICE", "cpu"])
    assert cfg.INFERENCE.SELECTION_FUNCTION == "zoo:tiny"
    assert resolve_selection_function("zoo:tiny") == folder / "selection_function.csv"
    text = (folder / "MODEL_CARD.md").read_text()
    assert "## Selection function" in text and "0.75 (3/4)" in text and "hosts: spiral" in text

    folder = zoo_study.package("tiny", tiny_checkpoint, _figures(), None, dest_root=str(zoo))
    assert not (folder / "selection_function.csv").exists()
    assert json.loads((folder / "card.json").read_text())["selection_function"] is None
    assert build_config("zoo:tiny", ["MODEL.DEVICE", "cpu"]).INFERENCE.SELECTION_FUNCTION == ""
    with pytest.raises(FileNotFoundError, match="no selection function"):
        resolve_selection_function("zoo:tiny")


def test_exported_weights_are_the_same_bytes_every_time(tiny_checkpoint, tmp_path):
    """Packaging the same checkpoint twice gives the same file (and sha256), so a re-packaged
    entry does not change in git when its weights did not."""
    first = zoo_study.export_weights(tiny_checkpoint, tmp_path / "a.safetensors")
    second = zoo_study.export_weights(tiny_checkpoint, tmp_path / "b.safetensors")
    assert first["sha256"] == second["sha256"]
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_every_shipped_entry_is_whole(monkeypatch):
    """Each entry in the package: weights matching its card's sha256 and its config's model
    tensor for tensor, the card's operating point in the config and in its recipe's."""
    from detectron2.modeling import build_model

    from clump_d2.modeling.checkpoint import read_safetensors

    monkeypatch.delenv("CLUMP_D2_ZOO", raising=False)
    names = model_zoo.list_models()
    assert {"sdss_lite0", "sdss_lite0_st"} <= set(names)
    for name in names:
        entry = model_zoo.get_entry(name)
        card = entry.card
        weights = Path(model_zoo.resolve_weights(f"zoo:{name}"))  # sha256 checked
        assert model_zoo.sha256_file(weights) == card["weights"]["sha256"]
        cfg = build_config(f"zoo:{name}", ["MODEL.DEVICE", "cpu"])
        thresh = card["operating_point"]["score_thresh"]
        assert cfg.TEST.CLUMP_EVAL.SCORE_THRESH == pytest.approx(thresh)
        recipe = zoo_study.get_recipe(name)
        # the card tells how to rebuild: the recipe's own steps
        assert card["rebuild"]["steps"] == [list(s.argv) for s in recipe.steps], name
        source = zoo_study.merged_config(str(REPO / recipe.source_config), recipe.config_opts)
        assert source.TEST.CLUMP_EVAL.SCORE_THRESH == pytest.approx(thresh)
        state = read_safetensors(weights)
        model_state = build_model(cfg).state_dict()
        assert set(state) == set(model_state), name
        assert all(state[k].shape == model_state[k].shape for k in state), name


def test_self_trained_recipe_labels_train_hosts_only_and_uses_its_labels():
    recipe = zoo_study.get_recipe("sdss_lite0_st")
    label = next(s for s in recipe.steps if s.argv[0] == "tools/self_train.py")
    data = next(s for s in recipe.steps if "--pseudo-labels" in s.argv)
    ids_from = label.argv[label.argv.index("--ids-from") + 1]
    assert ids_from.endswith("hosts.json:train")
    assert data.argv[data.argv.index("--pseudo-labels") + 1] == label.creates
    assert label.argv[label.argv.index("--out") + 1] == label.creates
    # the same hosts and injected clumps as sdss_lite0's set, and the same held-out test
    base = zoo_study.get_recipe("sdss_lite0")
    hosts_args = base.steps[0].argv[base.steps[0].argv.index("--hosts"):]
    assert data.argv[-len(hosts_args) - 2:-2] == hosts_args
    assert recipe.heldout_argv == base.heldout_argv


def test_deep_recipe_makes_the_set_real_population_sh_makes():
    """sdss_lite0_deep's data step and scripts/real_population.sh (VARIANT=deep) build the same
    real-host set: the same options, the round-1 labels, the same held-out test."""
    import shlex

    recipe = zoo_study.get_recipe("sdss_lite0_deep")
    data = recipe.steps[-1].argv
    script = (REPO / "scripts" / "real_population.sh").read_text()
    deep = shlex.split(script.split('DEEP="', 1)[1].split('"', 1)[0])
    start = data.index("--clump-frac")
    assert list(data[start:start + len(deep)]) == deep
    assert data[data.index("--pseudo-labels") + 1] == zoo_study.get_recipe(
        "sdss_lite0_st").steps[2].creates
    assert recipe.heldout_argv == zoo_study.get_recipe("sdss_lite0").heldout_argv
