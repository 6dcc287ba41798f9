"""``mars compare``: estimator settings (arms) x seeds, trained one after the other, summarised side by side.

    arms.py      the default arms (GRPO, GRPO+MARS, GRPO n+K, and the same for DAPO) and ``--arm`` specs
    runner.py    runs every arm x seed resumably, each in its own run directory
    summary.py   summary.json and table.md: rewards, budget, diagnostics, paired differences over seeds
    curves.py    curves.png: validation reward and accuracy against steps and against generated tokens
"""
