"""What a new user reads: help texts, override mistakes, the printed config, plots and progress lines."""

import os
import re
import shlex
from pathlib import Path

import pytest

from mars.cli import main as mars_main
from mars.train_cli import main as train_main
from mars.config.compose import ConfigError, compose_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["data", "--help"], ["model", "--help"]])
def test_help_is_plain_text(argv, capsys):
    try:
        code = mars_main(argv)
    except SystemExit as exc:  # argparse's own --help
        code = exc.code
    assert code == 0
    out = capsys.readouterr().out
    assert out.strip() and "``" not in out and not re.search(r"`[^`\n]+`", out), out


def test_the_data_help_examples_run_as_written(tmp_path, capsys, monkeypatch):
    assert mars_main(["data", "--help"]) == 0
    examples = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  mars data ")]
    assert len(examples) >= 5
    (tmp_path / "tests").symlink_to(ROOT / "tests")  # the examples' paths are relative to the repository root
    monkeypatch.chdir(tmp_path)
    for example in examples:
        args = shlex.split(example)[1:]
        if args[:2] == ["data", "synth"]:
            args[args.index("--num") + 1] = "20"  # the same command, smaller
        assert mars_main(args) == 0, example


def test_a_typo_is_one_line_with_the_closest_key(capsys):
    assert train_main(["trainer.total_training_step=5"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "mars train: unknown key trainer.total_training_step (did you mean trainer.total_training_steps?)"
    with pytest.raises(ConfigError, match="did you mean mars.variant_mode"):
        compose_config("embedded", ["mars.variant_mod=blank"])
    with pytest.raises(ConfigError, match=r"no option preset/dap \(available: dapo, grpo\)"):
        compose_config("embedded", ["preset=dap"])


def test_additions_that_nothing_reads_are_refused(capsys):
    assert train_main(["+trainer.total_training_step=5"]) == 2
    assert "did you mean trainer.total_training_steps" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="MARS reads no key mars.varient"):
        compose_config("embedded", ["+mars.varient=blank"])
    # what is read, or forced with ++, is accepted
    assert compose_config("embedded", ["+mars.expected_num_images=2"]).mars.expected_num_images == 2
    assert compose_config("embedded", ["++trainer.total_training_step=5"]).trainer.total_training_step == 5
    assert compose_config("embedded", ["+actor_rollout_ref.rollout.limit_images=2"]).actor_rollout_ref.rollout.limit_images == 2


def test_the_mars_settings_first_or_alone(capsys):
    assert train_main(["--cfg", "job", "--package", "mars", "mars.variant_mode=drop"]) == 0
    alone = capsys.readouterr().out
    assert alone.startswith("# mars\n") and "variant_mode: drop" in alone and "actor_rollout_ref" not in alone
    assert len(alone.splitlines()) < 40
    assert train_main(["--cfg", "job"]) == 0
    assert capsys.readouterr().out.startswith("mars:\n")


def test_plot_marks_measured_validation_and_keeps_equal_series_visible():
    from mars.training.plots import draw_run

    history = [{"step": 0, "val/reward": 0.2}]
    for step in range(1, 21):
        history.append({"step": step, "critic/score/mean": 0.5, "mars/anchor_reward/infrared": 0.4,
                        "mars/anchor_reward/visible": 0.4, "mars/information_gain": 0.1,
                        **({"val/reward": 0.3 + step / 100} if step % 10 == 0 else {})})
    fig = draw_run(history)
    val = [line for line in fig.axes[0].lines if line.get_label().startswith("validation")][0]
    assert list(val.get_xdata()) == [0, 10, 20] and val.get_linestyle() == "None" and val.get_marker() == "o"
    anchors = [line for line in fig.axes[1].lines if line.get_label().startswith("anchor")]
    assert len(anchors) == 2
    a, b = anchors
    assert list(a.get_ydata()) == list(b.get_ydata())  # equal series ...
    assert (a.get_linestyle(), a.get_marker()) != (b.get_linestyle(), b.get_marker())  # ... drawn differently
    assert a.get_linewidth() > b.get_linewidth()  # the first drawn is wider: the second shows inside it


def test_plot_legends_never_cover_data():
    from mars.training.plots import draw_run

    history = [{"step": 0, "val/reward": 0.2, "val/view/fused/accuracy": 0.7, "val/view/visible/accuracy": 0.4}]
    for step in range(1, 11):
        history.append({"step": step, "critic/score/mean": 1.0 + step / 10, "mars/anchor_reward/visible": 1.0,
                        "mars/information_gain": 0.1, "mars/signal_mars_only": 0.5,
                        **({"val/reward": 1.4, "val/view/fused/accuracy": 0.99, "val/view/visible/accuracy": 0.5}
                           if step == 10 else {})})
    fig = draw_run(history)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 4
    for ax in legends:
        legend = ax.get_legend().get_window_extent(renderer)
        plot_area = ax.get_window_extent(renderer)
        assert not legend.overlaps(plot_area), ax.get_title()


def test_progress_off_a_terminal_is_plain_lines(monkeypatch):
    from mars.training import progress

    monkeypatch.setattr(progress, "interactive", lambda: False)
    lines = []
    bar = progress.Progress(20, "SFT warm start", write=lines.append)
    for i in range(20):
        bar.update(loss=f"{1 / (i + 1):.3f}")
    bar.close()
    assert len(lines) == 10 and all("\r" not in line for line in lines)
    assert lines[-1].startswith("SFT warm start: 20/20 (loss 0.050)")
    silent = progress.Progress(5, "training", write=lines.append, lines=0)
    for _ in range(5):
        silent.update()
    assert len(lines) == 10


def test_mars_train_log_has_no_carriage_returns(tiny_model_dir, ir_data_dir, tmp_path):
    """``mars train > log``: plain lines (the subprocess's stderr is a pipe, not a terminal)."""
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "mars.cli", "train", f"actor_rollout_ref.model.path={tiny_model_dir}",
         f"data.train_files={ir_data_dir}/train.parquet", f"data.val_files={ir_data_dir}/val.parquet",
         f"trainer.default_local_dir={tmp_path / 'run'}", f"mars.sft_warmup.cache_dir={tmp_path / 'ws'}",
         "mars.sft_warmup.steps=10", "mars.sft_warmup.batch_size=2", "data.train_batch_size=2",
         "data.val_max_samples=2", "data.max_response_length=8", "actor_rollout_ref.rollout.n=2",
         "actor_rollout_ref.actor.ppo_mini_batch_size=1", "trainer.total_training_steps=2", "trainer.test_freq=2"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stdout + out.stderr
    assert "\r" not in log
    assert "SFT warm start: 10/10" in log and "step 2:" in log
    assert "1 torch thread" in log
    assert "Warning" not in log and "warnings.warn" not in log, log
