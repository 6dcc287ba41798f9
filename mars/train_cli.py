"""usage: mars train [--config-name NAME] [--cfg job [--package KEY]] [KEY=VALUE ...]

Trains a policy with GRPO+MARS. With no arguments: the embedded default, a tiny Qwen2.5-VL built locally and a
synthetic infrared+visible dataset ("is there a person?"), warm-started so that the visible image misleads its fused
answers, then trained on the CPU in a few minutes (no download); it reports the accuracy fused and per source.
Every KEY=VALUE is a Hydra override with verl's key names. A run lives in trainer.default_local_dir; running the same
command again resumes it, or reports it when it is complete.

examples:
  mars train                                          the embedded default
  mars train preset=dapo trainer.experiment_name=dapo DAPO+MARS, in its own run directory
  mars train perception=vgpo trainer.experiment_name=vgpo
                                                      + a perception-aware method: vgpo, vppo, papo, srpo (docs/methods.md)
  mars train trainer.total_training_steps=20          continue the default run to 20 steps
  mars train --config-name embedded                   the same scenes, warmed up on every fused prompt (no interference)
  mars train --config-name embedded_grounding         the embedded person-grounding task (boxes)
  mars train trainer.resume_mode=disable              start the default run over
  mars train trainer.engine=verl trainer.experiment_name=verl
                                                      the same configuration on verl's Ray workers (GPUs or CPU)
  mars train --config-name mars_trainer data.train_files=TRAIN.parquet data.val_files=VAL.parquet \\
      actor_rollout_ref.model.path=MODEL              the reference settings on your own data and model
  mars train --cfg job --package mars                 print the MARS settings only, and exit
  mars train --cfg job                                print the whole composed config (mars first), and exit
"""

from __future__ import annotations

import errno
import sys

from mars.config.compose import DEFAULT_CONFIG, ConfigError, compose_config
from mars.training.progress import quiet_third_party_warnings


def print_config(cfg, package: str | None) -> int:
    from omegaconf import OmegaConf

    if package:
        node = OmegaConf.select(cfg, package)
        if node is None:
            print(f"mars train: no key {package} in the config", file=sys.stderr)
            return 2
        print(f"# {package}\n" + (OmegaConf.to_yaml(node) if OmegaConf.is_config(node) else f"{node}\n"), end="")
        return 0
    # the MARS section first: it is what differs from verl's defaults, and the rest is 1000 lines of verl
    ordered = OmegaConf.create({"mars": cfg.mars, **{k: cfg[k] for k in cfg if k != "mars"}})
    print(OmegaConf.to_yaml(ordered), end="")
    return 0


def parse(argv: list[str]) -> tuple[str, str | None, str | None, list[str]]:
    config_name, print_what, package, overrides = DEFAULT_CONFIG, None, None, []
    it = iter(argv)
    for arg in it:
        if arg == "--config-name":
            config_name = next(it, config_name)
        elif arg.startswith("--config-name="):
            config_name = arg.split("=", 1)[1]
        elif arg in ("--cfg", "-c"):
            print_what = next(it, "job")
        elif arg in ("--package", "-p"):
            package = next(it, None)
        elif arg.startswith("--package="):
            package = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            raise ConfigError(f"unknown option {arg} (mars train --help lists them)")
        else:
            overrides.append(arg)
    return config_name, print_what, package, overrides


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    quiet_third_party_warnings()
    try:
        config_name, print_what, package, overrides = parse(argv)
        cfg = compose_config(config_name, overrides)
    except ConfigError as exc:
        print(f"mars train: {exc}", file=sys.stderr)
        return 2
    if print_what is not None:
        return print_config(cfg, package)

    from tqdm.auto import tqdm

    from mars.data.samples import BadDataError
    from mars.engines import engine_runner
    from mars.training.checkpoint import CheckpointError
    from mars.training.embedded import prepare_embedded
    from mars.training.run_dir import RunDirConflict
    from mars.training.settings import SettingsError

    try:
        run = engine_runner(str(cfg.trainer.engine))  # the one switch: same config, another engine
        prepare_embedded(cfg)
        run(cfg, write=tqdm.write)  # lines printed above the progress bar, not through it
    except BadDataError as exc:
        print(f"mars train: bad data: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, RunDirConflict, CheckpointError) as exc:  # refused before training: names the cause, the fix
        print(f"mars train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the closing line
        print(f"\nmars train: interrupted. {kept_line(cfg)}", file=sys.stderr)
        return 130
    except SettingsError as exc:  # a setting only the data or the model can refute (perception.source, patch_size)
        print("mars train: bad value:\n" + "\n".join(f"  - {p}" for p in exc.problems), file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - only a full disk is answered here; anything else goes on up
        if not disk_full(exc):
            raise
        print(f"mars train: {disk_full_line(cfg)}", file=sys.stderr)
        return 1
    return 0


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# what torch's and safetensors' writers say when a write fails (they raise RuntimeError, not OSError)
DISK_FULL_WORDS = ("no space left", "file write failed", "iostream error", "unexpected pos", "file too large",
                   "disk quota")


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a write that failed for want of room."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if any(word in str(exc).lower() for word in DISK_FULL_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_line(cfg) -> str:
    """One line: the folder, its free space, what was kept, and what to do."""
    import shutil
    from pathlib import Path

    folder = Path(str(cfg.trainer.default_local_dir))
    probe = folder if folder.exists() else folder.parent
    try:
        free = f"{shutil.disk_usage(probe).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return (f"no room to write in {folder.resolve()} ({free}). {kept_line(cfg)} Free some space (or point "
            "trainer.default_local_dir elsewhere) and run the same command again.")


def kept_line(cfg) -> str:
    """What an interrupted run left, in one line: the last checkpoint, and that the same command resumes."""
    from pathlib import Path

    from mars.training.checkpoint import CheckpointError, find_checkpoint

    folder = Path(str(cfg.trainer.default_local_dir))
    try:
        checkpoint = find_checkpoint(folder)[0]
    except CheckpointError:
        return f"{folder} has checkpoints, but none verifies; the same command says why and what to do."
    except OSError:
        checkpoint = None
    if checkpoint is None:
        return f"No checkpoint was saved yet in {folder}; the same command starts the run again."
    return f"Kept: {checkpoint} and the metrics up to it (the same command resumes from there)."


if __name__ == "__main__":
    sys.exit(main())
