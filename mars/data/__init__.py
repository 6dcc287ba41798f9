"""MARS datasets: the row schema, synthetic multi-source tasks, converters and the dataset checker.

- ``mars.data.schema``   the parquet row schema (verl's RL schema + a source name per image)
- ``mars.data.synth``    ``synthesize(task, out_dir, num, seed)``: ir_grounding, depth_vqa, multiview_vqa
- ``mars.data.convert``  reference JSON <-> parquet, parquet -> LLaMA-Factory SFT JSON
- ``mars.data.check``    ``validate_row`` and ``check_dataset`` (also used by the trainer)

Formats: ``docs/data_formats.md``; dataset card: ``data/README.md``; command line: ``mars data --help``.
"""

from mars.data.check import CheckReport, Problem, check_dataset, validate_row
from mars.data.convert import (
    infer_source_names,
    parquet_to_llamafactory,
    parquet_to_reference_json,
    reference_json_to_parquet,
)
from mars.data.schema import FORMAT_INSTRUCTION, ROW_SCHEMA, SOURCE_KEY
from mars.data.synth import TASKS, synthesize

__all__ = [
    "FORMAT_INSTRUCTION",
    "ROW_SCHEMA",
    "SOURCE_KEY",
    "TASKS",
    "CheckReport",
    "Problem",
    "check_dataset",
    "infer_source_names",
    "parquet_to_llamafactory",
    "parquet_to_reference_json",
    "reference_json_to_parquet",
    "synthesize",
    "validate_row",
]
