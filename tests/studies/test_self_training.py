"""Self-training: the pseudo-label rule, the real-host dataset built with pseudo-labels (train
hosts only, injected clumps unchanged), and the label tool with a stub detector."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from clump_d2.sim.real_hosts import (PSEUDO_LABEL_FORMAT, PseudoLabelError, RealHostParams,
                                     load_pseudo_labels, make_real_host_dataset, prepare_host,
                                     prepare_params)
from clump_d2.studies.self_training import (PseudoLabelParams, classify_knots,
                                            pseudo_label_hosts, resolve_hosts,
                                            write_pseudo_labels)

REPO = Path(__file__).resolve().parents[2]


def _boxes(xy, half=5.0):
    return np.array([[x - half, y - half, x + half, y + half] for x, y in xy]).reshape(-1, 4)


# --- the rule --------------------------------------------------------------------------------

# FWHM 4 px, centre (50, 50): match radius 4 px, nucleus within 4 px.
KNOTS = [(80, 50), (20, 50), (50, 52), (50, 20), (50, 80), (80, 80), (86, 80)]
SNR = [10, 10, 12, 7, 5, 10, 10]
DETS = [(82, 50), (20, 56), (50, 52), (51, 20), (50, 80), (84, 80), (30, 30), (31, 30),
        (10, 10)]
SCORES = [0.8, 0.9, 0.95, 0.4, 0.9, 0.7, 0.88, 0.86, 0.6]


def test_rule_positive_ignore_bulge_and_one_to_one():
    out = classify_knots(np.array(KNOTS, float), np.array(SNR, float), _boxes(DETS),
                         np.array(SCORES), 4.0, (50.0, 50.0), PseudoLabelParams())
    got = [(e["x"], e["y"], e["label"], e["reason"], e["score"]) for e in out]
    assert got == [
        (80, 50, "positive", "agreed", 0.8),          # detection 2 px away, score >= 0.5
        (20, 50, "ignore", "classical_only", 0.0),    # the detection is 6 px away: too far
        (50, 52, "ignore", "bulge", 0.95),            # the nucleus, whatever the network says
        (50, 20, "ignore", "classical_only", 0.4),    # the network is unsure
        (50, 80, "ignore", "low_snr", 0.9),           # S/N 5 < 6
        (80, 80, "ignore", "classical_only", 0.7),    # its detection is the other knot's...
        (86, 80, "positive", "agreed", 0.7)]          # ...which is nearer (2 px vs 4 px)
    assert all(e["kind"] == "knot" for e in out) and [e["snr"] for e in out] == SNR
    # A stricter rule: fewer positives, and the S/N limit applies to agreed knots too.
    strict = classify_knots(np.array(KNOTS, float), np.array(SNR, float), _boxes(DETS),
                            np.array(SCORES), 4.0, (50.0, 50.0),
                            PseudoLabelParams(min_score=0.75, min_snr=10.5))
    assert [e["label"] for e in strict].count("positive") == 0
    assert strict[0]["reason"] == "low_snr"


def test_rule_network_only_positives():
    params = PseudoLabelParams(network_only_score=0.85)
    out = classify_knots(np.array(KNOTS, float), np.array(SNR, float), _boxes(DETS),
                         np.array(SCORES), 4.0, (50.0, 50.0), params)
    extra = [(e["x"], e["y"], e["score"], e["reason"]) for e in out if e["kind"] == "detection"]
    # (20, 56) 0.9 is 6 px from any knot: its own positive; (30, 30) 0.88 too, and (31, 30)
    # is the same source; (50, 80) lies on a knot, (50, 52) on the nucleus, (10, 10) is unsure.
    assert extra == [(20, 56, 0.9, "network_only"), (30, 30, 0.88, "network_only")]
    assert all(e["label"] == "positive" and e["snr"] is None for e in out
               if e["kind"] == "detection")
    # Off by default; no knots and no detections are no entries.
    assert classify_knots(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 4)), np.zeros(0), 4.0,
                          (50, 50), PseudoLabelParams()) == []


# --- the dataset -------------------------------------------------------------------------------

PARAMS = RealHostParams(crop_size=80, versions_per_host=3, empty_fraction=0.3,
                        clump_count_probs=(0.0, 1.0), seed=1)
LISTS = {"train": ["1000", "1001", "1002", "1003"], "val": ["1004"], "test": ["1005"]}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, write_host_jpegs):
    """Six host JPEGs; with PARAMS, 1001, 1002 (train), 1004 (val) and 1005 (test) have knots."""
    return write_host_jpegs(tmp_path_factory.mktemp("st_hosts"), 6, seed=3, first_id=1000,
                            size=96)


def _stub(picks):
    """A detector that finds, per host id, the knots ``picks[hid]`` = [(knot index, score)]."""
    def detect(image, rec):
        assert image.dtype == np.float32 and image.shape == (80, 80, 3)
        xy, scores = picks.get(rec["name"], ([], []))
        return {"boxes": _boxes(xy), "scores": np.array(scores, float)}
    return detect


@pytest.fixture(scope="module")
def labelled(hosts, tmp_path_factory):
    """Pseudo-labels of the train hosts (1002: knots 0 and 1 agreed, knot 2 unsure; 1001: its
    knot agreed), the dataset with them and without them."""
    files = resolve_hosts(hosts, LISTS["train"])
    knots = {hid: prepare_host(p, hid, PARAMS).knots for hid, p in files.items()}
    assert len(knots["spiral/1001"]) == 1 and len(knots["non_spiral/1002"]) == 4
    k2 = knots["non_spiral/1002"]
    picks = {"spiral/1001": ([knots["spiral/1001"][0] + 0.7], [0.8]),
             "non_spiral/1002": ([k2[0], k2[1] - 0.5, k2[2]], [0.9, 0.6, 0.3])}
    doc = pseudo_label_hosts(files, _stub(picks), PseudoLabelParams(), PARAMS,
                             detector_name="stub", show_progress=False)
    tmp = tmp_path_factory.mktemp("st_data")
    path = write_pseudo_labels(doc, tmp / "labels.json")
    plain = make_real_host_dataset(hosts, tmp / "plain", params=PARAMS, host_lists=LISTS,
                                   show_progress=False)
    st = make_real_host_dataset(hosts, tmp / "st", params=PARAMS, host_lists=LISTS,
                                show_progress=False, pseudo_labels=path)
    load = {name: {s: json.loads(Path(p).read_text()) for s, p in d.items()}
            for name, d in (("plain", plain), ("st", st))}
    return {"doc": doc, "path": path, "tmp": tmp, "knots": knots, **load}


def test_pseudo_label_file(labelled):
    doc = labelled["doc"]
    assert doc["format"] == PSEUDO_LABEL_FORMAT
    assert doc["parameters"]["host_params"] == prepare_params(PARAMS)
    assert doc["parameters"]["min_score"] == 0.5 and doc["parameters"]["detector"] == "stub"
    labels = {hid: [e["label"] for e in es] for hid, es in doc["hosts"].items()}
    assert labels == {"non_spiral/1000": [], "spiral/1001": ["positive"],
                      "non_spiral/1002": ["positive", "positive", "ignore", "ignore"],
                      "spiral/1003": []}
    assert doc["counts"] == {"hosts": 4, "knots": 5, "positives": 3, "knot_positives": 3,
                             "network_only_positives": 0, "ignored": 2,
                             "hosts_with_positives": 2, "skipped": 0,
                             "ignored_by_reason": {"classical_only": 2, "low_snr": 0,
                                                   "bulge": 0}}


def test_train_knots_become_labels_in_every_version(labelled):
    train = labelled["st"]["train"]
    by_image = {im["id"]: im for im in train["images"]}
    pseudo = [a for a in train["annotations"] if a.get("source") == "pseudo_label"]
    assert all(a["iscrowd"] == 0 and a["category_id"] == 1 for a in pseudo)
    per_host = {}
    for a in pseudo:
        per_host.setdefault(by_image[a["image_id"]]["host_id"], []).append((a["x"], a["y"]))
    k2 = labelled["knots"]["non_spiral/1002"]
    expected = {"spiral/1001": [tuple(labelled["knots"]["spiral/1001"][0])] * 3,
                "non_spiral/1002": [tuple(k2[0]), tuple(k2[1])] * 3}  # 3 versions each
    assert {h: sorted(v) for h, v in per_host.items()} == {h: sorted(v)
                                                          for h, v in expected.items()}
    # The other knots stay ignore regions; nothing else changed in the train split.
    crowd = [(by_image[a["image_id"]]["host_id"], a["x"], a["y"])
             for a in train["annotations"] if a["iscrowd"]]
    assert sorted(crowd) == sorted([("non_spiral/1002", *map(float, k2[i]))
                                    for i in (2, 3)] * 3)
    info = train["info"]["pseudo_labels"]
    assert info["sha256"] == hashlib.sha256(Path(labelled["path"]).read_bytes()).hexdigest()
    assert info["counts"]["positives"] == 3 and info["labels_in_split"] == 9


def _injected(coco):
    return [(a["image_id"], a["x"], a["y"], a["flux_frac"], a["category_id"])
            for a in coco["annotations"] if "flux_frac" in a]


def test_injected_clumps_and_val_test_unchanged(labelled):
    plain, st, tmp = labelled["plain"], labelled["st"], labelled["tmp"]
    for split in ("train", "val", "test"):
        assert st[split]["images"] == plain[split]["images"]
        assert _injected(st[split]) == _injected(plain[split])
        assert len(_injected(st[split])) > 0 or split != "train"
        for im in plain[split]["images"]:  # pixel for pixel
            assert (tmp / "st" / "images" / im["file_name"]).read_bytes() == \
                (tmp / "plain" / "images" / im["file_name"]).read_bytes()
    for split in ("val", "test"):  # the validation and held-out hosts: untouched
        assert st[split]["annotations"] == plain[split]["annotations"]
        assert any(a["iscrowd"] for a in st[split]["annotations"])
        assert st[split]["info"]["pseudo_labels"]["labels_in_split"] == 0


def test_val_or_test_hosts_in_the_file_are_refused(labelled, hosts, tmp_path):
    doc = json.loads(Path(labelled["path"]).read_text())
    for hid in ("spiral/1005", "non_spiral/1004"):  # test, val
        bad = json.loads(json.dumps(doc))
        bad["hosts"][hid] = [{"x": 10.0, "y": 10.0, "score": 0.9, "snr": 9.0,
                              "label": "ignore", "kind": "knot", "reason": "classical_only"}]
        path = write_pseudo_labels(bad, tmp_path / "bad.json")
        with pytest.raises(PseudoLabelError, match=hid) as e:
            make_real_host_dataset(hosts, tmp_path / "out", params=PARAMS, host_lists=LISTS,
                                   show_progress=False, pseudo_labels=path)
        assert "train" in str(e.value)
        assert not (tmp_path / "out").exists()  # refused before anything is written
    # Other host settings: their knots are not this dataset's.
    with pytest.raises(PseudoLabelError, match="psf_full_image"):
        make_real_host_dataset(hosts, tmp_path / "out", params=RealHostParams(
            **{**PARAMS.__dict__, "psf_full_image": True}), host_lists=LISTS,
            show_progress=False, pseudo_labels=labelled["path"])
    # A knot the host does not have (another image): named.
    moved = json.loads(json.dumps(doc))
    moved["hosts"]["spiral/1001"][0]["x"] += 3
    with pytest.raises(PseudoLabelError, match="spiral/1001.*none of the host's knots"):
        make_real_host_dataset(hosts, tmp_path / "out2", params=PARAMS, host_lists=LISTS,
                               show_progress=False,
                               pseudo_labels=write_pseudo_labels(moved, tmp_path / "m.json"))
    (tmp_path / "x.json").write_text('{"hosts": {}}')
    with pytest.raises(PseudoLabelError, match="not a pseudo-label file"):
        load_pseudo_labels(tmp_path / "x.json")


def test_make_real_hosts_tool_refuses_with_exit_2(labelled, hosts, tmp_path, load_tool, capsys):
    doc = json.loads(Path(labelled["path"]).read_text())
    doc["hosts"]["non_spiral/1004"] = []
    path = write_pseudo_labels(doc, tmp_path / "val.json")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": LISTS["train"] + LISTS["val"],
                                 "heldout": LISTS["test"]}))
    with pytest.raises(SystemExit) as e:
        load_tool("make_real_hosts").main([
            "--hosts", str(hosts), "--out", str(tmp_path / "o"), "--split-json", str(split),
            "--val", "1", "--pseudo-labels", str(path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    # the tool's val draw may pick any one train galaxy: the refusal names a non-train host
    assert "--pseudo-labels" in err and "may get pseudo-labels" in err


# --- the tool ----------------------------------------------------------------------------------

def test_label_tool_writes_the_expected_json(hosts, tmp_path, load_tool, monkeypatch):
    tool = load_tool("self_train")
    params = RealHostParams(crop_size=80, psf_full_image=True, seed=1)
    files = resolve_hosts(hosts, ["1001", "1002"])
    knots = {hid: prepare_host(p, hid, params).knots for hid, p in files.items()}
    picks = {hid: ([k[0]], [0.7]) for hid, k in knots.items() if len(k)}
    built = {}

    def fake_model_detector(cfg, as_catalogue=False):
        built["as_catalogue"] = as_catalogue
        built["weights"] = cfg.MODEL.WEIGHTS
        return _stub(picks)

    monkeypatch.setattr(tool, "model_detector", fake_model_detector)
    ids = tmp_path / "hosts.json"
    ids.write_text(json.dumps({"train": ["1001", "1002"], "val": ["1004"]}))
    out = tmp_path / "r1" / "labels.json"
    tool.main(["label", "--config-file", str(REPO / "configs" / "quickstart.yaml"),
               "--weights", "w.pth", "--hosts", str(hosts), "--ids-from", f"{ids}:train",
               "--out", str(out), "--crop-size", "80", "--seed", "1", "--min-score", "0.6",
               "--no-progress"])
    assert built == {"as_catalogue": True, "weights": "w.pth"}
    doc = json.loads(out.read_text())
    assert sorted(doc["hosts"]) == ["non_spiral/1002", "spiral/1001"]
    assert doc["parameters"]["host_params"] == prepare_params(params)
    assert doc["parameters"]["min_score"] == 0.6 and doc["parameters"]["detector"] == "w.pth"
    for hid, entries in doc["hosts"].items():
        assert [(e["x"], e["y"]) for e in entries] == [tuple(map(float, k)) for k in knots[hid]]
        assert [e["label"] for e in entries] == ["positive"] + ["ignore"] * (len(entries) - 1)
        assert entries[0]["score"] == 0.7
    assert doc["counts"]["hosts"] == 2 and doc["counts"]["positives"] == 2
    # A name that is no host is named, exit status 2.
    ids.write_text(json.dumps({"train": ["9999"]}))
    with pytest.raises(SystemExit) as e:
        tool.main(["label", "--config-file", str(REPO / "configs" / "quickstart.yaml"),
                   "--hosts", str(hosts), "--ids-from", f"{ids}:train", "--out", str(out)])
    assert e.value.code == 2


def test_self_training_config():
    from clump_d2.engine import build_config

    cfg = build_config(str(REPO / "configs" / "RealData" / "sdss_realhosts_lite0_st.yaml"))
    base = build_config(str(REPO / "configs" / "RealData" / "sdss_realhosts_lite0.yaml"))
    assert cfg.DATASETS.TRAIN == ("gz2hosts1pc_st_train", "sdss1e_train")
    assert cfg.DATASETS.TEST == ("gz2hosts1pc_st_val",)
    assert cfg.OUTPUT_DIR == "output/realdata/sdss_realhosts_lite0_st"
    # Its own operating point, chosen on the validation hosts (scripts/self_train.sh) ...
    assert cfg.TEST.CLUMP_EVAL.SCORE_THRESH == pytest.approx(0.70)
    cfg.defrost()
    cfg.TEST.CLUMP_EVAL.SCORE_THRESH = base.TEST.CLUMP_EVAL.SCORE_THRESH
    # ... and everything else is the recommended recipe.
    for key in ("MODEL", "SOLVER", "TEST", "INFERENCE", "INPUT"):
        assert cfg[key] == base[key], key
