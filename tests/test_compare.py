"""`mars compare`: the arms, the paired statistics, and a smoke comparison (2 arms, 1 seed, 2 tiny steps) that
checks the folder it writes and that a rerun trains nothing."""

import json

import pytest

from mars.compare.arms import Arm, fill_placeholders, parse_arm_spec, select_arms
from mars.compare.cli import main as compare_main
from mars.compare.cli import parse
from mars.compare.runner import run_comparison
from mars.compare.summary import markdown_table, paired_differences, run_stats, spread

from tests.test_local_engine import tiny_overrides as local_tiny_overrides


def test_default_arms_and_arm_specs():
    arms = select_arms(None)
    assert [a.name for a in arms] == ["grpo", "grpo_mars", "grpo_nk", "dapo", "dapo_mars", "dapo_nk"]
    assert [a.family() for a in arms] == ["grpo"] * 3 + ["dapo"] * 3
    assert [a.estimator() for a in arms] == ["grpo", "mars", "grpo"] * 2
    nk = fill_placeholders(arms[2], n=6, k=2)
    assert "actor_rollout_ref.rollout.n=8" in nk.overrides and nk.label == "GRPO n+K=8"
    arms = select_arms(["grpo_mars"], ["grpo_mars: mars.variant_mode=blank", "mine: algorithm.adv_estimator=mars "
                                       "'trainer.project_name=a b'"])
    assert arms[0].overrides[-1] == "mars.variant_mode=blank"
    assert arms[1].name == "mine" and arms[1].overrides[-1] == "trainer.project_name=a b"
    with pytest.raises(ValueError, match="unknown arm"):
        select_arms(["nope"])
    # an arm --arm defines may be named in --arms: only the named arms run, in that order
    arms = select_arms(["mine", "grpo"], ["mine: perception=faithful_mr1"])
    assert [(a.name, a.overrides) for a in arms] == [("mine", ["perception=faithful_mr1"]),
                                                      ("grpo", ["algorithm.adv_estimator=grpo"])]
    with pytest.raises(ValueError, match="NAME"):
        parse_arm_spec("no colon here")
    opts = parse(["--seeds", "3,4", "--arms=grpo,grpo_mars", "--quiet", "x.y=1"])
    assert opts["seeds"] == [3, 4] and opts["arms"] == ["grpo", "grpo_mars"] and opts["quiet"]
    assert opts["overrides"] == ["x.y=1"]


def test_paired_differences_pair_seeds_within_a_family():
    arms = [Arm("m", ["algorithm.adv_estimator=mars"]), Arm("g", ["algorithm.adv_estimator=grpo"]),
            Arm("d", ["preset=dapo", "algorithm.adv_estimator=grpo"])]
    per_run = {
        "m": {0: {"val_reward_final": 1.0}, 1: {"val_reward_final": 0.5}, 2: {"val_reward_final": 0.9}},
        "g": {0: {"val_reward_final": 0.5}, 1: {"val_reward_final": 0.75}},  # seed 2 missing: not paired
        "d": {0: {"val_reward_final": 0.0}},
    }
    (pair,) = paired_differences(per_run, arms)  # no pair across families, none between baselines
    assert (pair["arm"], pair["baseline"], pair["seeds"]) == ("m", "g", [0, 1])
    diff = pair["val_reward_final"]
    assert diff["per_seed"] == [0.5, -0.25] and diff["mean"] == pytest.approx(0.125) and diff["ahead"] == 1
    assert diff["std"] == pytest.approx(0.5303300858)
    assert spread([2.0])["std"] is None and spread([])["n"] == 0


def test_run_stats_from_a_history():
    history = [
        {"step": 0, "val/reward": 0.5, "val/accuracy": 0.0},
        {"step": 1, "mars/generated_tokens": 100.0, "timing_s/step": 2.0, "mars/signal_mars_only": 0.0,
         "mars/anchor_reward/rgb": 1.0, "mars/anchor_reward": 1.0},
        {"step": 2, "mars/generated_tokens": 50.0, "timing_s/step": 1.0, "mars/signal_mars_only": 0.25,
         "val/reward": 1.5, "val/accuracy": 1.0, "mars/anchor_reward/rgb": 0.0},
    ]
    stats = run_stats(history, wall_s=4.0)
    assert stats["val_reward_start"] == 0.5 and stats["val_reward_final"] == 1.5 and stats["val_reward_mean"] == 1.5
    assert stats["accuracy_key"] == "val/accuracy" and stats["val_accuracy_final"] == 1.0
    assert stats["generated_tokens"] == 150.0 and stats["train_s"] == 3.0
    assert stats["mars/signal_mars_only"] == 0.125 and stats["mars/steps_with_mars_only_signal"] == 0.5
    assert stats["mars/anchor_reward/rgb"] == 0.5
    assert stats["curves"]["val/reward"] == {"step": [0, 2], "value": [0.5, 1.5], "tokens": [0.0, 150.0]}


def tiny_overrides(model_dir, data_dir, cache):
    """The fast settings of tests/test_local_engine.py's tiny_cfg, for every arm (2 validation prompts, 2 steps)."""
    changed = {"data.val_max_samples": 2, "trainer.total_training_steps": 2, "mars.plots": "false"}
    kept = [o for o in local_tiny_overrides(model_dir, data_dir, cache) if o.split("=", 1)[0] not in changed]
    return [*kept, *(f"{key}={value}" for key, value in changed.items())]


def test_smoke_comparison_writes_the_folder_and_reruns_nothing(tiny_model_dir, ir_data_dir, tmp_path):
    out = tmp_path / "cmp"
    overrides = tiny_overrides(tiny_model_dir, ir_data_dir, tmp_path / "warm_start")
    lines: list[str] = []
    arms = select_arms(["grpo_mars", "grpo_nk"])
    summary = run_comparison(out, arms, [0], overrides, write=lines.append)

    for name in ("summary.json", "table.md", "curves.png", "runs.json"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    mars_arm, nk_arm = summary["arms"]
    assert nk_arm["label"] == "GRPO n+K=4"  # n=2 rollouts + K=2 anchors (visible, infrared)
    for arm in (mars_arm, nk_arm):
        assert arm["seeds"] == [0] and arm["runs"]["0"]["steps"] == 2
        assert arm["stats"]["generated_tokens"]["mean"] > 0 and arm["stats"]["wall_s"]["mean"] > 0
        assert arm["runs"]["0"]["curves"]["val/reward"]["step"] == [0, 2]
    # MARS's diagnostics come from its anchors; the n+K arm generates none
    assert {"mars/signal_mars_only", "mars/information_gain", "mars/anchor_reward/infrared",
            "mars/anchor_reward/visible"} <= set(mars_arm["stats"])
    assert not {"mars/anchor_reward/infrared", "mars/information_gain", "mars/signal_mars_only"} & set(nk_arm["stats"])
    assert "mars/signal_groups_grpo" in nk_arm["stats"]
    (pair,) = summary["paired"]
    assert (pair["arm"], pair["baseline"], pair["seeds"]) == ("grpo_mars", "grpo_nk", [0])
    table = (out / "table.md").read_text()
    assert "GRPO+MARS n=2 K=2" in table and "GRPO n+K=4" in table and "paired difference" in table
    assert any("run 2/2" in line for line in lines)
    runs = json.loads((out / "runs.json").read_text())
    assert {r["status"] for r in runs.values()} == {"complete"}

    # again, through the command line: nothing is trained, nothing in the runs is rewritten
    metrics = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.jsonl")}
    assert len(metrics) == 2
    assert compare_main(["--out", str(out), "--arms", "grpo_mars,grpo_nk", "--seeds", "0", "--quiet",
                         *overrides]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.jsonl")} == metrics
    assert json.loads((out / "runs.json").read_text()) == runs  # the wall times were not added to
    assert markdown_table(json.loads((out / "summary.json").read_text())) == table
    # --report-only writes the folder from what is complete, here one arm of the two
    (out / "table.md").unlink()
    assert compare_main(["--out", str(out), "--arms", "grpo_mars", "--seeds", "0", "--report-only", *overrides]) == 0
    only = json.loads((out / "summary.json").read_text())
    assert [a["name"] for a in only["arms"]] == ["grpo_mars"] and only["arms"][0]["seeds"] == [0]
    assert "GRPO+MARS n=2 K=2" in (out / "table.md").read_text()


def test_changed_settings_stop_with_the_way_out(tiny_model_dir, ir_data_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    overrides = tiny_overrides(tiny_model_dir, ir_data_dir, tmp_path / "warm_start")
    (out / "runs" / "grpo_mars_s0").mkdir(parents=True)
    (out / "runs" / "grpo_mars_s0" / "config.yaml").write_text("algorithm:\n  adv_estimator: grpo\n")
    (out / "runs" / "grpo_mars_s0" / "metrics.jsonl").write_text('{"step": 0}\n')  # a run that began training
    assert compare_main(["--out", str(out), "--arms", "grpo_mars", "--seeds", "0", "--quiet", *overrides]) == 2
    assert "new --out DIR" in capsys.readouterr().err


def test_the_end_of_a_run_says_what_the_anchors_changed():
    from mars.training.plots import draw_run
    from mars.training.tracking import anchor_signal_line

    steps = [{"step": s, "critic/score/mean": 1.0, "mars/anchor_reward": 0.8, "mars/information_gain": 0.2,
              "mars/signal_mars_only": 0.25 if s % 2 else 0.0} for s in range(1, 5)]
    line = anchor_signal_line([{"step": 0, "val/reward": 0.5}, *steps])
    assert line.startswith("anchors: MARS-only signal on 2 of 4 steps (mean 0.12 of groups")
    assert "+0.200 (fused beats" in line
    flat = [{**h, "mars/signal_mars_only": 0.0, "mars/information_gain": 0.0} for h in steps]
    assert anchor_signal_line(flat).startswith("anchors: no MARS-only signal in 4 steps")
    assert anchor_signal_line([{k: v for k, v in h.items() if k != "mars/anchor_reward"} for h in steps]) is None
    bars = [p for p in draw_run(steps).axes[2].patches]
    assert [b.get_height() for b in bars] == [0.25, 0.0, 0.25, 0.0]  # the MARS-only share, one bar per step


def test_the_embedded_configs_differ_from_the_default_only_where_they_say():
    """``embedded`` is ir_presence (the anchors matter); ``embedded_presence`` is the setting docs/compare.md measured
    (a longer warm start and run); ``embedded_grounding`` the box task."""
    from mars.config.compose import compose_config, config_keys
    from mars.training.run_dir import config_differences
    from omegaconf import OmegaConf

    def differences(name):
        base, other = compose_config("embedded", []), compose_config(name, [])
        assert config_keys(base) == config_keys(other)  # the same keys: only values differ
        return other, set(config_differences(OmegaConf.to_container(base, resolve=True),
                                             OmegaConf.to_container(other, resolve=True)))

    base = compose_config("embedded", [])
    assert base.mars.embedded.task == "ir_presence" and base.trainer.experiment_name == "embedded_ir_presence"
    lengths = {"mars.sft_warmup.steps", "trainer.total_training_steps", "trainer.save_freq"}  # how long
    names = {"trainer.experiment_name", "trainer.default_local_dir", "actor_rollout_ref.rollout.trace.experiment_name"}
    presence, diffs = differences("embedded_presence")
    assert presence.mars.sft_warmup.steps == 360
    assert diffs == lengths | names  # the same task and data, run longer in a folder of its own
    grounding, diffs = differences("embedded_grounding")
    assert grounding.mars.embedded.task == "ir_grounding"
    assert diffs == lengths | names | {"trainer.test_freq", "mars.embedded.task", "mars.embedded.data_dir",
                                       "data.train_files", "data.val_files"}

def test_paired_differences_carry_a_95_percent_t_interval():
    from mars.compare.summary import t_interval

    low, high = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.3027
    assert low == pytest.approx(2 - 4.302653 / 3 ** 0.5, abs=1e-5) and high == pytest.approx(2 + 4.302653 / 3 ** 0.5,
                                                                                            abs=1e-5)
    assert t_interval([0.5]) is None
    arms = [Arm("m", ["algorithm.adv_estimator=mars"], "M"), Arm("g", ["algorithm.adv_estimator=grpo"], "G")]
    per_run = {"m": {s: {"val_reward_final": 1.0 + s} for s in range(3)},
               "g": {s: {"val_reward_final": 1.0} for s in range(3)}}
    (pair,) = paired_differences(per_run, arms)
    assert pair["val_reward_final"]["ci95"] == pytest.approx([low - 1, high - 1])
    assert pair["val_reward_final"]["per_seed"] == [0.0, 1.0, 2.0]
