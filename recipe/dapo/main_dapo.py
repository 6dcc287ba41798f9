"""``python -m recipe.dapo.main_dapo [HYDRA_OVERRIDES ...]``: DAPO+MARS on verl, from the repository root.

DAPO as in the reference scripts (SPEC §2): clip-higher 0.2/0.28, clip_ratio_c 10, token-mean, no KL, overlong
reward shaping by verl's DAPO reward manager (buffer 4096, penalty 1.0), dynamic sampling on seq_reward with at most
10 generation batches, 12 rollouts, 16 prompts per step, lr 1e-6 with 10 warm-up steps, weight decay 0.1. The
dynamic sampling keeps a group while its MARS statistics carry signal (``mars.filter_mode=mars``; ``dapo`` is plain
DAPO), with its anchors attached. The config is ``mars/config/verl_dapo.yaml``; ``--cfg job`` prints it.
"""

import hydra

CONFIG_NAME = "verl_dapo"  # in mars/config (the package mars.config)


@hydra.main(config_path="pkg://mars.config", config_name=CONFIG_NAME, version_base=None)
def main(config) -> None:
    from mars.engines.verl.launch import run_entry_point

    run_entry_point(config)


if __name__ == "__main__":
    main()
