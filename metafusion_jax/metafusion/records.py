"""Typed records that pass between Meta Fusion stages, and their checkpoint form.

A stage trains one cohort at R rho values for S seeds (`program.run_stage`). While it runs, its
state is a `RunState` (device arrays, leaves [S, R, M, ...]); a checkpoint between epoch chunks
holds a `Progress` (the stage, the epochs done, that state). A finished stage is a `StageRecord`
(host numpy): what evaluation reads and what later stages need (the B1 warm start).
`check_resumable` compares a checkpoint's saved config with the run's before anything restores.

Letters: S seeds, R rho values, M members, E epochs, N rows of a split, C outputs.
"""
import json
from typing import NamedTuple, Optional

import jax
import numpy as np

SPLITS = ("train", "val", "test")


class RunState(NamedTuple):
    """The state of a rho-run between epochs (one run: leaves [M, ...]; a stage: [S, R, M, ...]).

    Attributes:
      params: cohort params after the last epoch run.
      opt_state: the Adam state after the last epoch run (every leaf leads with M).
      best_params: per member, the params of its best-validation epoch so far.
      best_opt_state: per member, the Adam state of that epoch (needed by the B1 warm start).
      best_val: [M] best validation task loss so far (inf before the first epoch).
      val_curve: [E, M] validation task loss per epoch (0 for epochs not run yet).
      train_task: [E, M] mean minibatch task loss per epoch (0 for epochs not run yet).
    """
    params: object
    opt_state: object
    best_params: object
    best_opt_state: object
    best_val: object
    val_curve: object
    train_task: object


class Progress(NamedTuple):
    """A stage in progress: `epoch` of its E epochs done, `state` a RunState [S, R, M, ...]."""
    stage: str
    epoch: int
    state: RunState


class Predictions(NamedTuple):
    """Member outputs of the best-validation params on each split, each [S, R, M, N, C]."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


class WarmState(NamedTuple):
    """Best-epoch params and Adam state of every member, trees with leaves [S, R, M, ...]."""
    params: object
    opt_state: object


class StageRecord(NamedTuple):
    """A finished stage (host numpy).

    Attributes:
      rhos: float64 [R] rho values of the stage's runs.
      best_val: float32 [S, R, M] best validation task loss of each member.
      val_curve: float32 [S, R, E, M] validation task loss per epoch.
      train_task: float32 [S, R, E, M] mean minibatch task loss per epoch.
      preds: Predictions [S, R, M, N, C] of the best params, or None.
      warm: WarmState of the best epochs (kept for the B1 warm start), or None.
    """
    rhos: np.ndarray
    best_val: np.ndarray
    val_curve: np.ndarray
    train_task: np.ndarray
    preds: Optional[Predictions] = None
    warm: Optional[WarmState] = None


def join(first: StageRecord, second: Optional[StageRecord]) -> StageRecord:
    """Records [S, R1, ...] and [S, R2, ...] -> [S, R1 + R2, ...] (warm states are dropped)."""
    if second is None:
        return first._replace(warm=None)
    cat = lambda a, b: np.concatenate([a, b], axis=1)
    preds = None
    if first.preds is not None and second.preds is not None:
        preds = Predictions(*[cat(a, b) for a, b in zip(first.preds, second.preds)])
    return StageRecord(np.concatenate([first.rhos, second.rhos]), cat(first.best_val,
                       second.best_val), cat(first.val_curve, second.val_curve),
                       cat(first.train_task, second.train_task), preds)


def replace_rho(record: StageRecord, index: int, other: StageRecord) -> StageRecord:
    """`record` [S, R, ...] with its run at rho index `index` taken from `other` [S, 1, ...].

    Raises:
      ValueError: `other` holds more than one run, or a different rho value.
    """
    if other.best_val.shape[1] != 1 or float(other.rhos[0]) != float(record.rhos[index]):
        raise ValueError(f"replace_rho: expected one run at rho {float(record.rhos[index])}, got "
                         f"rhos {other.rhos.tolist()}.")

    def put(a, b):
        out = np.array(a, copy=True)
        out[:, index] = b[:, 0]
        return out
    preds = None
    if record.preds is not None and other.preds is not None:
        preds = Predictions(*[put(a, b) for a, b in zip(record.preds, other.preds)])
    return StageRecord(record.rhos, put(record.best_val, other.best_val),
                       put(record.val_curve, other.val_curve),
                       put(record.train_task, other.train_task), preds)


# ------------------------------------------------------------------ checkpoint form
# orbax restores containers as dicts; leaves are stored under zero-padded keys so that their
# order survives, and put back into the tree structure of a `like` tree of the same kind.


def pack_tree(tree) -> dict:
    """Any pytree -> {"00000": leaf, ...} in `jax.tree.leaves` order."""
    return {f"{i:05d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


def unpack_tree(flat: dict, like):
    """Inverse of `pack_tree`, with the structure of `like` (leaves of `like` are not used).

    Raises:
      ValueError: the leaf count differs from `like`'s (a checkpoint of another cohort).
    """
    treedef = jax.tree.structure(like)
    leaves = [flat[k] for k in sorted(flat)]
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"checkpoint holds {len(leaves)} arrays, the cohort state has "
                         f"{treedef.num_leaves}; the workdir belongs to another cohort.")
    return jax.tree.unflatten(treedef, leaves)


def pack_record(record: StageRecord) -> dict:
    """StageRecord -> a dict of arrays for orbax (None fields left out)."""
    out = {"rhos": record.rhos, "best_val": record.best_val, "val_curve": record.val_curve,
           "train_task": record.train_task}
    if record.preds is not None:
        out["preds"] = record.preds._asdict()
    if record.warm is not None:
        out["warm"] = pack_tree(record.warm)
    return out


def unpack_record(tree: dict, warm_like=None) -> StageRecord:
    """Inverse of `pack_record`; `warm_like`: a WarmState of the right structure (if kept)."""
    preds = Predictions(**{k: np.asarray(v) for k, v in tree["preds"].items()}) if (
        "preds" in tree) else None
    warm = None
    if "warm" in tree:
        warm = jax.tree.map(np.asarray, unpack_tree(tree["warm"], warm_like))
    return StageRecord(np.asarray(tree["rhos"], np.float64), np.asarray(tree["best_val"]),
                       np.asarray(tree["val_curve"]), np.asarray(tree["train_task"]), preds, warm)


def _flat(tree, prefix=""):
    """Nested JSON dicts -> {"a.b": value}, lists as tuples (the form the message prints)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = _tuples(value)
    return out


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def check_resumable(saved_config, config_json: str, workdir: str) -> None:
    """Raises ValueError naming the fields in which a workdir's checkpoint differs from this run.

    Args:
      saved_config: the checkpoint meta's "config" (a Meta Fusion run saves `config.to_json`).
      config_json: this run's resolved `config.to_json(sort_keys=True)`.
      workdir: named in the message.
    """
    if saved_config == config_json:
        return
    now = _flat(json.loads(config_json))
    try:
        saved = _flat(json.loads(saved_config))
    except (TypeError, ValueError):
        saved = None
    if not isinstance(saved, dict) or "rho_list" not in saved or "cohort.mod_outs" not in saved:
        details = ("a checkpoint the Meta Fusion trainer did not write (e.g. a MetaMMF run's: its "
                   "config has no rho_list / cohort.mod_outs)")
    else:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in diff[:8])
        details += f"; and {len(diff) - 8} more" if len(diff) > 8 else ""
    raise ValueError(
        f"workdir {workdir} holds a checkpoint of a different run ({details}). A Meta Fusion run "
        "resumes only with the config it started with: use a new --workdir, restore the saved "
        "values, or delete the workdir's checkpoints/ folder.")
