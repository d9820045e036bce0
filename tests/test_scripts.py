"""The study scripts: valid bash, and the shared S82 fine-tuning functions build the commands
the docs describe (run with PY=echo, so nothing trains)."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_bash(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def _run(snippet, tmp_path):
    out = subprocess.run(["bash", "-c", f". scripts/s82_finetune.sh; PY=echo; {snippet}"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()


def test_s82_finetune_commands(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    (done / "model_final.pth").write_text("")
    lines = _run(f"s82_finetune cfg.yaml {tmp_path}/new train test MODEL.WEIGHTS w.pth; "
                 f"s82_finetune cfg.yaml {done} train test", tmp_path)
    # the finished run is skipped; the other trains on the split + the simulated galaxies
    assert lines == [f"tools/train_net.py --config-file cfg.yaml DATASETS.TRAIN "
                     f"('gzh_s82c_train','sdsscatmix_train') DATASETS.TEST ('gzh_s82c_test',) "
                     f"OUTPUT_DIR {tmp_path}/new MODEL.WEIGHTS w.pth"]
    halves = _run(f"s82_finetune_halves cfg.yaml {tmp_path}/x", tmp_path)
    assert [line.split("OUTPUT_DIR ")[1] for line in halves] == [
        f"{tmp_path}/x/{h}" for h in ("train_a", "train_b", "test_a", "test_b")]
    assert "('gzh_s82c_train_a','sdsscatmix_train') DATASETS.TEST ('gzh_s82c_train_b',)" \
        in halves[0]


def test_s82_xfit_args(tmp_path):
    lines = _run('s82_xfit_args ft root "{tune}"; printf "%s\\n" "${XFIT[@]}"', tmp_path)
    assert lines == ["--threshold-from", "ft=root/{tune}_a/model_final.pth@gzh_s82c_{tune}_b",
                     "--threshold-from", "ft=root/{tune}_b/model_final.pth@gzh_s82c_{tune}_a"]


def test_operating_point_functions(tmp_path):
    """inject_hosts.sh's baseline_thresh / network_thresh: the baseline's F1-best score; the
    network's lowest score within the baseline's false rate, else its F1-best score."""
    import json
    import sys

    real = tmp_path / "real_eval.json"
    real.write_text(json.dumps([{"method": "net", "thresh": 0.55559},
                                {"method": "classical_baseline", "thresh": 0.31234}]))
    picked, none = tmp_path / "picked.json", tmp_path / "none.json"
    sweep = {"classical baseline": {"within_baseline_false_rate": None}}
    picked.write_text(json.dumps({"sweeps": {**sweep, "w.pth": {
        "within_baseline_false_rate": {"thresh": 0.7}}}}))
    none.write_text(json.dumps({"sweeps": {**sweep, "w.pth": {
        "within_baseline_false_rate": None}}}))
    out = subprocess.run(
        ["bash", "-c", f". scripts/inject_hosts.sh; PY={sys.executable}; "
                       f"baseline_thresh {real}; network_thresh {picked} {real} net; "
                       f"network_thresh {none} {real} net"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0.3123", "0.7", "0.5556"]


def test_real_clumps_eval_commands(tmp_path):
    """real_clumps_eval.sh (PYTHON=echo): each model on both datasets and folds; with
    FINETUNE=1 also fine-tuned from its weights on each fold and its halves, thresholds
    cross-fitted by the halves."""
    import os

    env = {**os.environ, "PYTHON": "echo", "E": str(tmp_path), "MODELS": "a=zoo:a",
           "FINETUNE": "1"}
    out = subprocess.run(["bash", "scripts/real_clumps_eval.sh"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    evaluate = [line for line in out if line.startswith("tools/eval_real.py evaluate")]
    assert [line.split("--dataset ")[1].split()[0] for line in evaluate] == \
        ["gzh_s82c", "gzh_s82c", "gzh_s82_1e", "gzh_s82_1e", "gzh_s82c", "gzh_s82c"]
    assert all("--model a=zoo:a" in line for line in evaluate[:4])
    train = [line for line in out if line.startswith("tools/train_net.py")]
    assert len(train) == 6 and all(line.endswith("MODEL.WEIGHTS zoo:a") for line in train)
    assert {line.split("OUTPUT_DIR ")[1].split()[0] for line in train} == {
        f"{tmp_path}/finetune/a/{d}" for d in
        ("on_train", "on_test", "train_a", "train_b", "test_a", "test_b")}
    assert (f"--model a_ft={tmp_path}/finetune/a/on_train/model_final.pth --threshold-from "
            f"a_ft={tmp_path}/finetune/a/train_a/model_final.pth@gzh_s82c_train_b") \
        in evaluate[4]
    paper = [line for line in out if line.startswith("tools/eval_real.py paper")]
    assert len(paper) == 3 and "on_{tune}" in paper[2] and "calibrated" in paper[0]


def test_real_population_variants():
    """real_population.sh knows its two variants (their set options differ by --width-psf
    only) and refuses any other before running anything."""
    import os

    out = subprocess.run(["bash", "scripts/real_population.sh"], cwd=ROOT,
                         env={**os.environ, "VARIANT": "bogus", "PYTHON": "false"},
                         capture_output=True, text=True)
    assert out.returncode == 2 and "VARIANT must be deep or wide, not 'bogus'" in out.stderr
    text = (ROOT / "scripts" / "real_population.sh").read_text()
    assert 'wide) SET_ARGS="$DEEP --width-psf 1.0 2.5"' in text
    for variant in ("deep", "wide"):  # each variant's config names its own dataset
        cfg = (ROOT / "configs" / "RealData" / f"sdss_realhosts_lite0_{variant}.yaml").read_text()
        assert f'TRAIN: ("gz2hosts{variant}_train", "sdss1e_train")' in cfg
