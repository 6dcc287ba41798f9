"""``python -m mars.main_ppo [HYDRA_OVERRIDES ...]``: GRPO+MARS on verl (Ray, FSDP, vLLM or SGLang rollouts).

The config is ``mars/config/verl_grpo.yaml``: verl's own ``ppo_trainer`` with the ``mars`` section and the GRPO
preset of the reference scripts; ``preset=dapo`` gives DAPO+MARS (the same as ``python -m recipe.dapo.main_dapo``).
``--cfg job`` prints the composed config without starting anything. The launch scripts in ``examples/`` and
``recipe/dapo/`` fill in the model, the data and the cluster; see docs/verl_engine.md.
"""

import hydra

CONFIG_NAME = "verl_grpo"  # in mars/config (the package mars.config)


@hydra.main(config_path="config", config_name=CONFIG_NAME, version_base=None)
def main(config) -> None:
    from mars.engines.verl.launch import run_entry_point

    run_entry_point(config)


if __name__ == "__main__":
    main()
