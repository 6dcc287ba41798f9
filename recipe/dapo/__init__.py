"""DAPO + MARS: ``python -m recipe.dapo.main_dapo`` and ``sh recipe/dapo/run_dapo_qwen2.5_3b.sh``."""
