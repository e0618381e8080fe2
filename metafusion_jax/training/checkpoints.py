"""orbax checkpoints for the training loops: a `latest` manager (resume) and a `best` one.

Each checkpoint holds an array pytree (`state`: params, optimizer state, ...) and a small JSON
record (`meta`: epoch, best metric, counters). orbax writes into a temporary directory and renames
it when complete, so a run killed mid-save leaves the previous checkpoint intact.
"""
import os
from typing import Any, NamedTuple, Optional

import jax
import orbax.checkpoint as ocp


class Restored(NamedTuple):
    step: int
    state: Any
    meta: dict


class RunCheckpoints:
    """Two orbax CheckpointManagers under `<workdir>/checkpoints/{latest,best}`."""

    def __init__(self, workdir: str):
        root = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        self.latest = ocp.CheckpointManager(os.path.join(root, "latest"), options=options)
        self.best = ocp.CheckpointManager(os.path.join(root, "best"), options=options)

    @staticmethod
    def _save(manager, step: int, state, meta: dict) -> None:
        manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))
            ),
            force=True,
        )

    def save_latest(self, step: int, state, meta: dict) -> None:
        self._save(self.latest, step, state, meta)

    def save_best(self, step: int, state, meta: dict) -> None:
        self._save(self.best, step, state, meta)

    @staticmethod
    def _restore(manager, like) -> Optional[Restored]:
        step = manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return Restored(step=int(step), state=out.state, meta=dict(out.meta))

    def restore_latest(self, like) -> Optional[Restored]:
        """Latest checkpoint restored into the structure/shardings of `like`, or None."""
        return self._restore(self.latest, like)

    def restore_best(self, like) -> Optional[Restored]:
        return self._restore(self.best, like)

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.wait()
        self.latest.close()
        self.best.close()
