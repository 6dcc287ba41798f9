"""``mars train [--config-name NAME] [--cfg job] [HYDRA_OVERRIDES ...]``: the local-engine trainer.

With no arguments it trains the embedded default (config ``embedded``): a tiny Qwen2.5-VL built locally, synthetic
infrared+visible data, GRPO+MARS on the CPU. ``trainer.engine=verl`` runs the same configuration on verl's Ray worker
groups instead (GPU nodes, vLLM/SGLang; the same as ``python -m mars.main_ppo``). ``--config-name mars_trainer`` starts from the reference settings
instead (bring ``data.train_files``, ``data.val_files`` and ``actor_rollout_ref.model.path``). ``--cfg job`` prints
the composed config and exits.
"""

from __future__ import annotations

import sys

from mars.trainer.compose import compose_config


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    config_name, print_only, overrides = "embedded", False, []
    it = iter(argv)
    for arg in it:
        if arg == "--config-name":
            config_name = next(it)
        elif arg.startswith("--config-name="):
            config_name = arg.split("=", 1)[1]
        elif arg == "--cfg":
            next(it, None)
            print_only = True
        else:
            overrides.append(arg)
    cfg = compose_config(config_name, overrides)
    if print_only:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return 0

    from mars.trainer.dataset import BadDataError
    from mars.trainer.embedded import prepare_embedded
    from mars.trainer.loop import run_training

    from tqdm.auto import tqdm

    prepare_embedded(cfg)
    if str(cfg.trainer.engine) == "verl":  # the engine is a switch: same config, Ray worker groups
        from mars.engines.verl.launch import run as run_on_verl

        run_on_verl(cfg)
        return 0
    try:
        run_training(cfg, write=tqdm.write)  # lines printed above the progress bar, not through it
    except BadDataError as exc:
        print(f"mars train: bad data: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
