"""Choosing the number of TTA views: each count's operating point from its sweep (the
lowest score no noisier than the baseline), the targets there, and the fewest views that
meet them (tools/tta_views.py)."""
import json

from clump_d2.studies.tta_views import choose_views, views_markdown, views_table


def _entry(thresh, false, r3, r10):
    return {"thresh": thresh, "false_per_galaxy": false,
            "by_flux_frac": [{"flux_frac": 0.03, "fraction": r3},
                             {"flux_frac": 0.1, "fraction": r10}]}


def _sweep_file(tmp_path, views, pick):
    base = {"operating": 0.31, "sweep": [_entry(0.3, 0.05, 0.8, 0.9), _entry(0.31, 0.047, 0.78,
                                                                            0.93)]}
    net = {"operating": 0.65, "sweep": [pick] if pick else [],
           "within_baseline_false_rate": pick}
    path = tmp_path / f"sweep_{views}.json"
    path.write_text(json.dumps({"sweeps": {"classical baseline": base, "zoo:m": net}}))
    return path


def test_fewest_views_meeting_the_targets_is_chosen(tmp_path, load_tool):
    runs = {8: _sweep_file(tmp_path, 8, _entry(0.65, 0.04, 0.963, 0.993)),
            4: _sweep_file(tmp_path, 4, _entry(0.70, 0.045, 0.951, 0.99)),
            2: _sweep_file(tmp_path, 2, _entry(0.80, 0.046, 0.94, 0.99)),  # 3 % below 0.95
            1: _sweep_file(tmp_path, 1, None)}  # never as quiet as the baseline
    result = views_table(runs)
    assert [r["views"] for r in result["rows"]] == [8, 4, 2, 1]
    assert [r["meets_targets"] for r in result["rows"]] == [True, True, False, False]
    assert result["rows"][3]["thresh"] is None
    assert result["baseline_false_per_galaxy"] == 0.047
    assert result["choice"]["views"] == 4 and result["choice"]["thresh"] == 0.70
    text = views_markdown(result, "python tools/tta_views.py x", "2-core CPU")
    assert "**4 views at score 0.70**" in text and "| 1 | none |" in text
    assert choose_views([r for r in result["rows"] if r["views"] < 4]) is None

    tool = load_tool("tta_views")
    argv = [a for v, p in runs.items() for a in ("--run", f"{v}={p}")]
    assert tool.main(argv + ["--output-dir", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "views.json").read_text())
    assert saved["choice"]["views"] == 4
