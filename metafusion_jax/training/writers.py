"""Metric logs: JSON lines plus TensorBoard event files (tensorboardX, no TensorFlow).

A trainer opens its log with `open_run_log(logdir, resumed_step)`: a resumed run continues its
own log (rows past the restored step dropped), a fresh run first moves any earlier logs aside, so
one metrics.jsonl and one set of event files never mix two runs.
"""
import glob
import json
import os
import time
from typing import Mapping, Optional, Sequence

from absl import logging
import numpy as np

LOG_FILE = "metrics.jsonl"
EVENTS_GLOB = "events.out.tfevents.*"
STALE_DIR = "stale_logs"


def _to_float(name: str, value) -> float:
    value = float(np.asarray(value))
    return value


class MetricWriter:
    """Writes scalars to `<logdir>/metrics.jsonl` and TensorBoard events in `<logdir>`.

    Appends to an existing JSON-lines file, so a resumed run continues its log; on resume,
    rows with a step beyond the restored step are dropped first (`truncate_after`).
    `open_run_log` does both for a trainer and also handles the fresh-run case.
    """

    def __init__(self, logdir: str, tensorboard: bool = True):
        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        self.path = os.path.join(logdir, LOG_FILE)
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


class NullWriter:
    """MetricWriter's interface writing nothing: the log of every process but process 0."""

    path = None

    def truncate_after(self, step: int) -> None:
        del step

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        del step, scalars

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def set_aside_stale_logs(logdir: str, also: Sequence[str] = ()) -> Optional[str]:
    """Moves metrics.jsonl, TensorBoard event files and `also` (names in logdir) aside.

    They go to `<logdir>/stale_logs/<UTC time>/`, with an absl warning naming it.

    Returns:
      The folder they were moved to, or None if there was nothing to move.
    """
    names = [LOG_FILE, *also]
    found = [p for p in (os.path.join(logdir, n) for n in names) if os.path.isfile(p)]
    found += sorted(p for p in glob.glob(os.path.join(logdir, EVENTS_GLOB)) if os.path.isfile(p))
    if not found:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target, n = os.path.join(logdir, STALE_DIR, stamp), 1
    while os.path.exists(target):
        n += 1
        target = os.path.join(logdir, STALE_DIR, f"{stamp}-{n}")
    os.makedirs(target)
    for path in found:
        os.replace(path, os.path.join(target, os.path.basename(path)))
    logging.warning(
        "%s has logs but no checkpoint to resume from (an earlier run that stopped before its "
        "first checkpoint, or another run): moved %s to %s; this run starts a fresh log.",
        logdir, [os.path.basename(p) for p in found], target)
    return target


def open_run_log(logdir: str, resumed_step: Optional[int], tensorboard: bool = True,
                 also_stale: Sequence[str] = (), enabled: bool = True):
    """The MetricWriter of a run that resumes from `resumed_step`, or of a fresh run (None).

    Resumed: the existing log is continued, rows past `resumed_step` dropped. Fresh: earlier
    logs (and the files named in `also_stale`, e.g. an old results.json) are moved aside first
    (`set_aside_stale_logs`), so the new log holds this run only. With enabled=False (every
    process of a multi-process run but process 0: `mesh.is_writer()`) a `NullWriter`, and
    nothing is moved.
    """
    if not enabled:
        return NullWriter()
    if resumed_step is None:
        set_aside_stale_logs(logdir, also_stale)
    writer = MetricWriter(logdir, tensorboard=tensorboard)
    if resumed_step is not None:
        writer.truncate_after(int(resumed_step))
    return writer
