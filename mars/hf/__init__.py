"""Hugging Face transformers in this process: what both engines build on, below them both.

    decoding.py    batched generation with per-row greedy/sampled rows (the local engine, the verl ``hf`` rollout,
                   inference)
    log_probs.py   teacher-forced per-token log-probs of responses (the local engine's losses, the warm start)
    device.py      device, CPU threads, autocast
    lora.py        LoRA adapters (training, merging)
    warm_start.py  the supervised warm start both engines start RL from (cached)
"""
