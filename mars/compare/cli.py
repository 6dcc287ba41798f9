"""usage: mars compare [--out DIR] [--seeds 0,1,2,3,4] [--arms NAME,NAME] [--arm 'NAME: KEY=VALUE ...']
                    [--config-name NAME] [--quiet] [--report-only] [KEY=VALUE ...]

Trains several estimator settings ("arms") over several seeds with the engine trainer.engine names (default the
local one), one run after the other, and writes a comparison folder: summary.json, table.md (mean ± sd over seeds, generated tokens, wall time, MARS's
diagnostics, paired differences) and curves.png. Every run has its own directory OUT/runs/ARM_sSEED; running the
same command again skips complete runs and resumes interrupted ones, so a comparison can be stopped and continued.

  --out DIR          the comparison folder (default outputs/compare/default)
  --seeds LIST       comma-separated seeds (default 0,1,2,3,4); each seed is a data order, an RL seed and a warm start
  --arms LIST        arms by name (default the six: grpo, grpo_mars, grpo_nk, dapo, dapo_mars, dapo_nk); also known:
                     grpo_vgpo, grpo_papo, grpo_vppo, grpo_srpo, grpo_faithful_mr1 and grpo_mars_<each> (docs/methods.md)
  --arm 'NAME: K=V'  overrides for one arm (a default one, or a new arm of that name, which --arms may then name);
                     repeatable
  --config-name N    the config to start from (default: embedded_interference, the same as mars train)
  --quiet            no per-step lines of the runs
  --report-only      train nothing: write the folder from the runs already complete (a comparison stopped early)
  KEY=VALUE          Hydra overrides for every arm (before the arm's own)

The default arms: GRPO with n rollouts, GRPO+MARS with n rollouts and K anchors, GRPO with n+K rollouts (as many
generated sequences as MARS: the fair control), and the same three with preset=dapo. n is rollout.n, K the number
of anchors per training prompt (read from the data). Example, a quick look at GRPO vs GRPO+MARS:

  mars compare --arms grpo,grpo_mars --seeds 0 trainer.total_training_steps=10
"""

from __future__ import annotations

import sys

from mars.config.compose import DEFAULT_CONFIG


def parse(argv: list[str]) -> dict:
    opts = {"out": "outputs/compare/default", "seeds": [0, 1, 2, 3, 4], "arms": None, "specs": [],
            "config_name": DEFAULT_CONFIG, "quiet": False, "report_only": False, "overrides": []}
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if arg.startswith("--") and not eq and name not in ("--quiet", "--report-only"):
            value = next(it, None)
            if value is None:
                raise ValueError(f"{name} needs a value")
        if name == "--out":
            opts["out"] = value
        elif name == "--seeds":
            opts["seeds"] = [int(s) for s in value.split(",") if s.strip()]
        elif name == "--arms":
            opts["arms"] = [a.strip() for a in value.split(",") if a.strip()]
        elif name == "--arm":
            opts["specs"].append(value)
        elif name == "--config-name":
            opts["config_name"] = value
        elif arg == "--quiet":
            opts["quiet"] = True
        elif arg == "--report-only":
            opts["report_only"] = True
        elif arg.startswith("-"):
            raise ValueError(f"unknown option {arg} (mars compare --help lists them)")
        else:
            opts["overrides"].append(arg)
    if not opts["seeds"]:
        raise ValueError("--seeds names no seed")
    return opts


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    from mars.compare.arms import select_arms
    from mars.config.compose import ConfigError

    try:
        opts = parse(argv)
        arms = select_arms(opts["arms"], opts["specs"])
    except ValueError as exc:
        print(f"mars compare: {exc}", file=sys.stderr)
        return 2

    from tqdm.auto import tqdm

    from mars.compare.runner import run_comparison
    from mars.training.progress import quiet_third_party_warnings
    from mars.data.samples import BadDataError
    from mars.training.run_dir import RunDirConflict

    quiet_third_party_warnings()
    try:
        run_comparison(opts["out"], arms, opts["seeds"], opts["overrides"], opts["config_name"], write=tqdm.write,
                       step_lines=not opts["quiet"], train=not opts["report_only"])
    except ConfigError as exc:
        print(f"mars compare: {exc}", file=sys.stderr)
        return 2
    except BadDataError as exc:
        print(f"mars compare: bad data: {exc}", file=sys.stderr)
        return 2
    except RunDirConflict as exc:
        print(f"mars compare: {exc}\n(In a comparison, the way out is a new --out DIR: the folder holds runs of "
              "other settings.)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
