"""Result files written atomically, and the non-finite guard every training loop uses."""
import json
import math
import os
import tempfile
from typing import Any, Mapping


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes `obj` as JSON to `path` via a temp file + rename: readers never see half a file.

    Raises:
      ValueError: if `obj` holds a NaN/inf float (JSON would silently write `NaN`).
    """
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=_default)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _default(value):
    # numpy scalars / arrays and ConfigDict-like objects.
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON: {value!r}")


def check_finite(metrics: Mapping[str, float], where: str) -> None:
    """Raises FloatingPointError naming every non-finite metric, so no NaN is ever logged silently.

    Args:
      metrics: name -> scalar.
      where: what produced them (e.g. "epoch 3 training loss"), used in the message.
    """
    bad = {k: float(v) for k, v in metrics.items() if not math.isfinite(float(v))}
    if bad:
        raise FloatingPointError(
            f"non-finite values at {where}: {bad}. The run stopped before writing any checkpoint "
            "or result for this step; lower the learning rate, check the input features for "
            "extreme values, or resume from the last checkpoint in the workdir."
        )
