"""The training step, written once, and what it needs without an engine.

    step.py        one GRPO/DAPO + MARS step: where each engine call is made
    interface.py   the engine interface the step talks to (requests, rollout batches, the update's batch)
    settings.py    the typed settings the step reads, checked when the config is composed
    requests.py    rollouts and the anchors' mono-source variants of a batch of prompts, in one request list
    scoring.py     rewards of rollout rows (verl's custom-reward signature), DAPO's overlong shaping
    prompts.py     the stream of prompt batches, for at most trainer.total_epochs passes
    validation.py  validation metrics, and the accuracy per view (fused against each source alone)
    preflight.py   what is checked once the tokenizer is loaded, before the first step
    run_dir.py, checkpoint.py, tracking.py, plots.py, summary.py, progress.py, embedded.py
                   the run folder: one configuration, atomic checkpoints, metrics.jsonl, training.png, the closing
                   lines and result.json, progress lines, the embedded default's data and model
"""
