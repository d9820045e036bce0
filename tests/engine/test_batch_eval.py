"""Batch evaluation: table, plot, resumability, failures recorded; and the same numbers as
``tools/train_net.py --eval-only`` for one pair."""
import csv
import json
import math
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
