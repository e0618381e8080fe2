"""Run folders, result files written atomically, and the non-finite guards of the training loops."""
import json
import math
import os
import tempfile
from typing import Any, Mapping

import jax
import jax.numpy as jnp


def prepare_workdir(path) -> str:
    """Creates the run folder `path` (and its parents) and checks that it is a writable folder.

    Both trainers call this before they write anything, so a bad --workdir fails with one line
    naming the path, not with a raw FileExistsError / PermissionError from deep inside a save.

    Args:
      path: the run folder (str or os.PathLike); created if missing.

    Returns:
      `path` as a str.

    Raises:
      ValueError: `path` is a file, cannot be created (e.g. a parent is a file, or no
        permission), or is a folder this process cannot write into.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"workdir {path} is a file, not a folder. Pass a folder as --workdir (it is created "
            "if missing), or move the file away.")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"workdir {path} could not be created ({type(err).__name__}: "
            f"{err.strerror or err}). Pass a --workdir whose parents are folders you can write "
            "into.") from None
    try:  # os.access misleads on some mounts and for root: try it.
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write_probe_")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise ValueError(
            f"workdir {path} is not writable ({type(err).__name__}: {err.strerror or err}). "
            f"Make it writable (e.g. chmod u+w {path}) or pass another --workdir.") from None
    return path


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


@jax.jit
def _finite_leaves(tree):
    return jax.tree.map(lambda x: jnp.isfinite(x).all(), tree)


def check_finite_tree(tree, where: str) -> None:
    """Raises FloatingPointError naming the leaves of `tree` that hold NaN/inf (e.g. params).

    The training loops call it on the parameters before every checkpoint, so a NaN gradient
    behind a finite loss never reaches a saved checkpoint.

    Args:
      tree: a pytree of arrays (float or int leaves).
      where: what the tree is (e.g. "parameters after epoch 3"), used in the message.
    """
    flags = jax.device_get(_finite_leaves(tree))
    paths = jax.tree_util.tree_flatten_with_path(flags)[0]
    bad = [jax.tree_util.keystr(path) for path, ok in paths if not bool(ok)]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise FloatingPointError(
            f"non-finite values in the {where}: {shown}. Nothing was saved for this step (the "
            "last checkpoint in the workdir is from before it); lower the learning rate, keep "
            "dropout rates below 1, check the inputs for extreme values, then resume or use a "
            "new workdir.")
