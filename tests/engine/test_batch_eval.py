"""Batch evaluation: table, plot, resumability, failures recorded; and the same numbers as
``tools/train_net.py --eval-only`` for one pair."""
import csv
import json
import math
import os
from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser

from clump_d2.engine import ClumpTrainer, build_config
from clump_d2.engine import batch
from clump_d2.engine.batch import EvalPair, load_pairs, run_batch

REPO = Path(__file__).resolve().parents[2]


def test_load_pairs_yaml_and_csv(tmp_path):
    (tmp_path / "p.yaml").write_text(
        "- {name: a, config: c.yaml, weights: w.pth}\n"
        "- {name: b, config: c.yaml, weights: v.pth, opts: [TEST.CLUMP_EVAL.MATCH, distance]}\n")
    pairs = load_pairs(str(tmp_path / "p.yaml"))
    assert pairs[1] == EvalPair("b", "c.yaml", "v.pth", ["TEST.CLUMP_EVAL.MATCH", "distance"])
    (tmp_path / "p.csv").write_text("name,config,weights,opts\na,c.yaml,w.pth,\n"
                                    "b,c.yaml,v.pth,SOLVER.BASE_LR 0.1\n")
    assert load_pairs(str(tmp_path / "p.csv"))[1].opts == ["SOLVER.BASE_LR", "0.1"]
    (tmp_path / "dup.csv").write_text("name,config,weights\na,c,w\na,c,v\n")
    with pytest.raises(ValueError, match="unique"):
        load_pairs(str(tmp_path / "dup.csv"))


def test_batch_resumes_records_failures_and_matches_eval_only(tmp_path, tiny_synthetic,
                                                              tiny_model_opts, load_tool):
    cfg = build_config(str(REPO / "configs" / "quickstart.yaml"), tiny_model_opts(tmp_path) + [
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.CLUMP_EVAL.SCORE_THRESH", "0.3",
        "TEST.CLUMP_EVAL.CURVE_POINTS", "21", "TEST.CLUMP_EVAL.PLOTS", "False"])
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(cfg.dump())
    torch.manual_seed(0)
    model = ClumpTrainer.build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("tiny")
    weights = tmp_path / "tiny.pth"

    calls = []

    def counting(pair, dataset, output_dir, extra_opts):
        calls.append(pair.name)
        return batch.evaluate_unit(pair, dataset, output_dir, extra_opts)

    pairs = [EvalPair("tiny", str(config_file), str(weights)),
             EvalPair("broken", str(config_file), str(tmp_path / "missing.pth"))]
    out = tmp_path / "batch"
    records = run_batch(pairs, ["tinysim_val"], str(out), evaluate_fn=counting,
                        show_progress=False)
    assert calls == ["tiny", "broken"]
    ok, bad = records
    n_true = sum(len(d["annotations"]) for d in DatasetCatalog.get("tinysim_val"))
    assert ok["status"] == "ok" and ok["metrics"]["clumps/n_true"] == n_true
    assert ok["metrics"]["clumps/n_detections"] > 0 and "bbox/AP" in ok["metrics"]
    assert len(ok["curve"]["completeness"]) == 21
    assert bad["status"] == "error" and "missing.pth" in bad["error"]
    assert "Traceback" in bad["traceback"]

    rows = list(csv.DictReader(open(out / "batch_results.csv")))
    assert [(r["pair"], r["status"]) for r in rows] == [("tiny", "ok"), ("broken", "error")]
    assert float(rows[0]["n_true"]) == n_true and rows[1]["completeness"] == ""
    md = (out / "batch_results.md").read_text().splitlines()
    assert len(md) == 4 and md[0].startswith("| pair | dataset | status | completeness")
    assert (out / "batch_comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "runs" / "tiny" / "inference" / "tinysim_val" / "clump_metrics.json").is_file()

    # re-run: the finished unit is skipped, the failed one is tried again
    calls.clear()
    again = run_batch(pairs, ["tinysim_val"], str(out), evaluate_fn=counting,
                      show_progress=False)
    assert calls == ["broken"]
    assert again[0]["skipped"] and again[0]["metrics"] == ok["metrics"]
    calls.clear()
    run_batch(pairs, ["tinysim_val"], str(out), evaluate_fn=counting, show_progress=False,
              retry_failed=False)
    assert calls == []

    # tools/train_net.py --eval-only on the same pair gives the same numbers
    train_net = load_tool("train_net")
    args = default_argument_parser().parse_args([
        "--config-file", str(config_file), "--eval-only",
        "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(tmp_path / "eval_only")])
    results = train_net.main(args)
    assert results["clumps"]["n_detections"] == ok["metrics"]["clumps/n_detections"]
    for key, value in results["clumps"].items():
        stored = ok["metrics"][f"clumps/{key}"]
        if math.isnan(value):
            assert stored is None
        else:
            assert stored == pytest.approx(value, rel=1e-12), key
    for key in ("AP", "AP50"):
        v = results["bbox"][key]
        assert (math.isnan(v) and ok["metrics"][f"bbox/{key}"] is None) or \
            ok["metrics"][f"bbox/{key}"] == pytest.approx(v)
    saved = json.loads((tmp_path / "eval_only" / "inference" / "tinysim_val" /
                        "clump_metrics.json").read_text())
    assert saved["n_matched"] == ok["metrics"]["clumps/n_matched"]


def _tiny_config_file(tmp_path, tiny_model_opts) -> Path:
    cfg = build_config(str(REPO / "configs" / "quickstart.yaml"), tiny_model_opts(tmp_path) + [
        "TEST.CLUMP_EVAL.PLOTS", "False"])
    path = tmp_path / "tiny.yaml"
    path.write_text(cfg.dump())
    return path


def test_unloaded_weights_and_empty_dataset_are_errors_in_the_table(tmp_path, tiny_synthetic,
                                                                      tiny_model_opts):
    """End to end through run_batch: a model whose weights did not load is never "ok"."""
    from clump_d2.data.datasets import register_clump_dataset

    config_file = _tiny_config_file(tmp_path, tiny_model_opts)
    other = tmp_path / "other_model.pth"  # a checkpoint of another model: no key matches
    torch.save({"model": {"encoder.stem.weight": torch.zeros(8, 3, 3, 3)}}, other)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": [], "categories": [
        {"id": 1, "name": "clump"}, {"id": 2, "name": "odd_clump"}]}))
    register_clump_dataset("batch_test_empty", empty, tmp_path)
    # The tiny model saved by the trainer's checkpointer (with its checksum): once without its
    # box head and box predictor (mostly loaded), once with 4 kB of flipped tensor bytes.
    from checkpoint_helpers import flip_tensor_bytes

    from clump_d2.modeling.checkpoint import ClumpCheckpointer

    model = ClumpTrainer.build_model(build_config(str(config_file)))
    ClumpCheckpointer(model, str(tmp_path / "ck")).save("model_final")
    flipped = tmp_path / "ck" / "model_final.pth"
    flip_tensor_bytes(flipped, 4096)
    partial = tmp_path / "partial.pth"
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("roi_heads.box")}
    torch.save({"model": state}, partial)
    pairs = [EvalPair("unmatched", str(config_file), str(other)),
             EvalPair("no_weights", str(config_file), ""),
             EvalPair("partial", str(config_file), str(partial)),
             EvalPair("flipped", str(config_file), str(flipped))]
    out = tmp_path / "batch"
    records = run_batch(pairs, ["tinysim_val"], str(out), show_progress=False)
    assert [r["status"] for r in records] == ["error"] * 4
    assert records[0]["error"].startswith("WeightsNotLoadedError: ")
    assert "other_model.pth: none of its 1 tensors matched" in records[0]["error"]
    assert records[1]["error"].startswith("WeightsNotLoadedError: no weights given")
    n_box = len([k for k in model.state_dict() if k.startswith("roi_heads.box")])
    assert records[2]["error"].startswith(f"WeightsNotLoadedError: {partial}: only ")
    assert f"; {n_box} missing from its {len(state)} tensors" in records[2]["error"]
    assert records[3]["error"].startswith(f"CorruptCheckpointError: {flipped}: its content does "
                                          "not match the sha256")
    rows = list(csv.DictReader(open(out / "batch_results.csv")))
    assert [r["status"] for r in rows] == ["error"] * 4
    assert all(("WeightsNotLoadedError" in r["error"] or "CorruptCheckpointError" in r["error"])
               and r["completeness"] == "" for r in rows)

    weights = tmp_path / "w.pth"
    DetectionCheckpointer(ClumpTrainer.build_model(build_config(str(config_file))),
                          save_dir=str(tmp_path)).save("w")
    (rec,) = run_batch([EvalPair("tiny", str(config_file), str(weights))], ["batch_test_empty"],
                       str(tmp_path / "batch_empty"), show_progress=False)
    assert rec["status"] == "error"
    assert rec["error"] == (f"ValueError: dataset 'batch_test_empty' has no images ({empty}): "
                            "nothing to evaluate")
    with pytest.raises(ValueError, match="'no_such_set' is not registered"):
        batch.check_dataset("no_such_set")


def test_resume_compares_the_merged_config_content(tmp_path, tiny_synthetic, tiny_model_opts):
    """An edited config file (or an edited _BASE_ of it) is evaluated again, even with its old
    modification time; an unchanged one is skipped."""
    base = _tiny_config_file(tmp_path, tiny_model_opts)
    child = tmp_path / "child.yaml"
    child.write_text(f"_BASE_: {base.name}\nTEST:\n  CLUMP_EVAL:\n    SCORE_THRESH: 0.3\n")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not read by the stub evaluation")
    calls = []

    def stub(pair, dataset, output_dir, extra_opts):
        cfg = batch.unit_config(pair, dataset, output_dir, extra_opts)
        calls.append(cfg.TEST.CLUMP_EVAL.SCORE_THRESH)
        return {"metrics": {"clumps/completeness": 0.5}, "curve": {}}

    pairs = [EvalPair("child", str(child), str(weights))]

    def run():
        calls.clear()
        return run_batch(pairs, ["tinysim_val"], str(tmp_path / "b"), evaluate_fn=stub,
                         show_progress=False)

    def edit(path, old, new):
        stat = path.stat()
        path.write_text(path.read_text().replace(old, new))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same time, other content

    run()
    assert calls == [0.3]
    assert run()[0]["skipped"] and calls == []
    edit(child, "SCORE_THRESH: 0.3", "SCORE_THRESH: 0.4")
    assert not run()[0]["skipped"] and calls == [0.4]
    edit(base, "CURVE_POINTS: 101", "CURVE_POINTS: 11")
    assert not run()[0]["skipped"] and calls == [0.4]
    assert run()[0]["skipped"] and calls == []
    # other weights (same path, other size) are evaluated again
    weights.write_bytes(b"other weights, another size")
    assert not run()[0]["skipped"] and calls == [0.4]


def test_pair_names_never_share_a_result_file(tmp_path):
    """``run/a`` and ``run_a`` were both stored in results/run_a__<dataset>.json: the second
    pair was skipped with the first one's result. Each exact name now has its own file and
    folder, names differing only in case are refused, and a stored result is used only for
    the pair it names."""
    from clump_d2.engine.batch import result_file, unit_config

    names = ["run/a", "run_a", "run a", "..", "run@a"]
    files = {result_file(str(tmp_path), EvalPair(n, "c.yaml", "w.pth"), "ds/x") for n in names}
    assert len(files) == len(names)
    assert all(f.parent == tmp_path / "results" for f in files)
    assert result_file(str(tmp_path), EvalPair("tiny", "c", "w"), "tinysim_val").name == \
        "tiny__tinysim_val.json"  # plain names keep their file (earlier results still found)
    runs = {unit_config(EvalPair(n, "configs/quickstart.yaml", ""), "tinysim_val",
                        str(tmp_path)).OUTPUT_DIR for n in ("run/a", "run_a", "..")}
    assert len(runs) == 3 and all(Path(r).parent == tmp_path / "runs" for r in runs)

    calls = []

    def fake(pair, dataset, output_dir, extra_opts):
        calls.append(pair.name)
        return {"metrics": {"clumps/F1": len(calls)}}

    pairs = [EvalPair("run/a", "c.yaml", "w.pth"), EvalPair("run_a", "c.yaml", "w.pth")]
    first = run_batch(pairs, ["ds"], str(tmp_path / "b"), evaluate_fn=fake, show_progress=False)
    assert calls == ["run/a", "run_a"]
    assert [r["metrics"]["clumps/F1"] for r in first] == [1, 2]
    with pytest.raises(ValueError, match="would share the result file"):
        run_batch([EvalPair("Run", "c", "w"), EvalPair("run", "c", "w")], ["ds"],
                  str(tmp_path / "c"), evaluate_fn=fake, show_progress=False)


def test_summary_rows_give_min_median_max_over_ok_pairs():
    from clump_d2.engine.batch import summary_rows

    def rec(name, dataset, purity, status="ok"):
        return {"name": name, "dataset": dataset, "status": status,
                "metrics": {"clumps/purity": purity, "clumps/completeness": 0.9,
                            "bbox/AP": float("nan")}}

    records = [rec("s1", "val", 0.78), rec("s2", "val", 0.85), rec("s3", "val", 0.82),
               rec("bad", "val", 0.10, status="error"), rec("only", "other", 0.5)]
    rows = summary_rows(records)
    assert [r["pair"] for r in rows] == ["min of 3", "median of 3", "max of 3"]
    assert [r["purity"] for r in rows] == ["0.7800", "0.8200", "0.8500"]  # error row left out
    assert rows[0]["completeness"] == "0.9000" and rows[0]["AP"] == "undefined"
    assert all(r["dataset"] == "val" and r["status"] == "summary" for r in rows)
