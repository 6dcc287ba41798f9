"""The verl engine's payload: one ``DataProto`` row per generated sequence.

The training step selects and concatenates rows (DAPO's group filter, generation batches); verl's ``DataProto``
has the row operations (``select_idxs``, ``DataProto.concat``) but names them differently from the step's
``Payload`` protocol (``DataProto.select`` picks *keys*), so this thin wrapper translates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from verl import DataProto


@dataclass
class VerlPayload:
    """Rows of verl's agent-loop output, joined with the request fields (``uid``, ``mars_*``, reward inputs)."""

    data: DataProto

    def __len__(self) -> int:
        return len(self.data)

    def select(self, rows: np.ndarray) -> "VerlPayload":
        return VerlPayload(self.data.select_idxs(np.asarray(rows, dtype=np.int64)))

    @classmethod
    def concat(cls, parts: Sequence["VerlPayload"]) -> "VerlPayload":
        return cls(DataProto.concat([part.data for part in parts]))
