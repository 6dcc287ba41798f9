"""The verl engine checks its data with the dataset checker before Ray starts (never an assertion in a worker)."""

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from mars.data.schema import ROW_SCHEMA
from mars.engines.verl.checks import check_data_files
from mars.data.samples import BadDataError


def data_cfg(directory):
    return OmegaConf.create({"data": {"train_files": str(directory / "train.parquet"),
                                      "val_files": [str(directory / "val.parquet")]}})


def test_good_data_passes(ir_data_dir):
    check_data_files(data_cfg(ir_data_dir))


def test_a_bad_row_stops_before_ray_with_file_and_row(ir_data_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ir_data_dir, bad)
    rows = pd.read_parquet(bad / "val.parquet").to_dict("records")
    rows[1]["prompt"] = [{"role": "user", "content": "<image>only one placeholder for two images"}]
    pq.write_table(pa.Table.from_pylist(rows, schema=ROW_SCHEMA), bad / "val.parquet")
    with pytest.raises(BadDataError, match=r"data\.val_files: .*val\.parquet has bad rows(.|\n)*row 1"):
        check_data_files(data_cfg(bad))
