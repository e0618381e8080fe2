"""Metric logs: JSON lines plus TensorBoard event files (tensorboardX, no TensorFlow)."""
import json
import os
import time
from typing import Mapping

import numpy as np


def _to_float(name: str, value) -> float:
    value = float(np.asarray(value))
    return value


class MetricWriter:
    """Writes scalars to `<logdir>/metrics.jsonl` and TensorBoard events in `<logdir>`.

    Appends to an existing JSON-lines file, so a resumed run continues its log; on resume,
    rows with a step beyond the restored step are dropped first (`truncate_after`).
    """

    def __init__(self, logdir: str, tensorboard: bool = True):
        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        self.path = os.path.join(logdir, "metrics.jsonl")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter  # imported lazily: optional at import time

            self._tb = SummaryWriter(logdir=logdir, flush_secs=10)

    def truncate_after(self, step: int) -> None:
        """Drops logged rows whose step is greater than `step` (rows a killed run wrote)."""
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as f:
            rows = [line for line in f if line.strip()]
        kept = [r for r in rows if json.loads(r).get("step", -1) <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        row = {"step": int(step), "time": time.time()}
        for name, value in scalars.items():
            row[name] = _to_float(name, value)
            if self._tb is not None:
                self._tb.add_scalar(name, row[name], global_step=int(step))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
