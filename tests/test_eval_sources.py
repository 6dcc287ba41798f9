"""The per-source report's arithmetic on hand-made verdicts, and `mars eval sources` on the tiny model."""

from __future__ import annotations

import json

import pytest

from mars.evaluation.sources import ItemViews, Verdict, format_source_report, source_report

R, W = Verdict(True), Verdict(False)
UNPARSED = Verdict(False, parsed=False)


def item(fused, data_source="ds", **mono):
    return ItemViews(fused, mono, data_source)


def test_rates_on_two_sources():
    items = [
        item(W, visible=W, infrared=R),   # interference: fused wrong, infrared alone right
        item(R, visible=W, infrared=W),   # synergy: fused right, no source alone right
        item(R, visible=R, infrared=R),
        item(UNPARSED, visible=UNPARSED, infrared=R),  # interference again, two unparsed answers
    ]
    report = source_report(items)
    views = report["views"]
    assert list(views) == ["fused", "visible", "infrared"]
    assert views["fused"]["accuracy"] == 50.0 and views["fused"]["unparsed"] == 25.0
    assert views["visible"]["accuracy"] == 25.0 and views["visible"]["unparsed"] == 25.0
    assert views["infrared"]["accuracy"] == 75.0 and views["infrared"]["unparsed"] == 0.0
    assert report["best_source"] == "infrared" and report["fusion_gain"] == 50.0 - 75.0
    assert report["interference_rate"] == 50.0 and report["synergy_rate"] == 25.0
    # only infrared alone right: items 1 and 4; never visible alone
    assert report["dominance"] == {"infrared": 50.0, "visible": 0.0} or report["dominance"] == {"visible": 0.0,
                                                                                                 "infrared": 50.0}
    assert report["multi_source_items"] == 4 and report["single_source"]["items"] == 0


def test_six_sources_and_a_one_source_question_counted_apart():
    cams = [f"CAM_{k}" for k in range(6)]
    six = item(W, **{c: (R if c == "CAM_3" else W) for c in cams})
    single = item(R)  # one source: fused only
    report = source_report([six, single])
    assert report["items"] == 2 and report["multi_source_items"] == 1
    assert list(report["views"]) == ["fused", *cams]
    assert report["views"]["fused"]["accuracy"] == 0.0 and report["views"]["CAM_3"]["accuracy"] == 100.0
    assert report["interference_rate"] == 100.0 and report["synergy_rate"] == 0.0
    assert report["dominance"]["CAM_3"] == 100.0 and report["dominance"]["CAM_0"] == 0.0
    assert report["single_source"] == {"items": 1, "accuracy": 100.0, "unparsed": 0.0}
    assert "one-source questions" in format_source_report(report)


def test_grounding_iou_and_data_sources_broken_down():
    a = item(Verdict(True, True, 0.8), "llvip", visible=Verdict(False, True, 0.2), infrared=Verdict(True, True, 0.6))
    b = item(Verdict(False, True, 0.1), "other", visible=Verdict(False, True, 0.0), infrared=Verdict(False, False, 0.0))
    report = source_report([a, b])
    assert report["views"]["fused"]["mean_iou"] == pytest.approx(45.0)
    assert report["views"]["infrared"]["mean_iou"] == pytest.approx(30.0)
    assert set(report["by_data_source"]) == {"llvip", "other"}
    assert report["by_data_source"]["llvip"]["views"]["fused"]["accuracy"] == 100.0
    assert report["by_data_source"]["other"]["views"]["infrared"]["unparsed"] == 100.0
    assert "mean IoU" in format_source_report(report)


def test_no_multi_source_question_gives_no_gain():
    report = source_report([item(R), item(W)])
    assert report["fusion_gain"] is None and report["best_source"] is None and report["interference_rate"] == 0.0


def test_mars_eval_sources_on_the_tiny_model(tiny_model_dir, ir_data_dir, tmp_path):
    """The command on a parquet file of ours: every view answered, the report and the plot written."""
    from mars.cli import main

    import pandas as pd

    questions = tmp_path / "q.parquet"
    pd.read_parquet(ir_data_dir / "val.parquet").head(3).to_parquet(questions)
    out = tmp_path / "report.json"
    assert main(["eval", "sources", str(tiny_model_dir), str(questions), "--out", str(out), "--max-new-tokens", "4",
                 "--batch-size", "2"]) == 0
    report = json.loads(out.read_text())
    assert report["items"] == 3 and report["multi_source_items"] == 3 and report["task"] == "grounding"
    assert list(report["views"]) == ["fused", "visible", "infrared"]
    assert all(view["items"] == 3 for view in report["views"].values())
    assert out.with_suffix(".png").stat().st_size > 0


def test_mars_eval_sources_stops_on_a_missing_image_before_loading(tmp_path, capsys):
    from mars.cli import main

    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"role": "user", "ground_truth": "Yes", "content": [
        {"type": "image", "image": "nowhere/a.png"}, {"type": "image", "image": "nowhere/b.png"},
        {"type": "text", "text": "Is there a person?"}]}]))
    with pytest.raises(SystemExit) as stop:
        main(["eval", "sources", str(tmp_path / "no-model"), str(questions)])
    assert "item 0" in str(stop.value) and "nowhere/a.png" in str(stop.value)
