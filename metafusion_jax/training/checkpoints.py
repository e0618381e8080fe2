"""orbax checkpoints for the training loops: a `latest` manager (resume) and a `best` one.

Each checkpoint holds an array pytree (`state`: params, optimizer state, ...) and a small JSON
record (`meta`: epoch, best metric, counters). orbax writes into a temporary directory and renames
it when complete, so a run killed mid-save leaves the previous checkpoint intact.

A checkpoint that cannot be read back (a truncated array file, a corrupt meta record, a missing
`state` folder) raises one `ValueError` naming its folder and what to do, instead of orbax's and
tensorstore's tracebacks.
"""
import os
import sys
import time
from typing import Any, NamedTuple, Optional

import jax
import orbax.checkpoint as ocp


class Restored(NamedTuple):
    step: int
    state: Any
    meta: dict


def _drain_stray_reads(seconds: float = 0.2) -> None:
    """Waits for the reads a failed restore left running, hiding their one known complaint.

    orbax runs a restore on a fresh event loop and closes it as soon as one array read fails;
    tensorstore then completes the other reads in its own threads and their callbacks hit the
    closed loop ("RuntimeError: Event loop is closed", printed as an ignored exception). Only
    that message is swallowed, only during this wait; anything else still reaches the hook.
    """
    previous = sys.unraisablehook

    def hook(unraisable):
        value = unraisable.exc_value
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        time.sleep(seconds)
    finally:
        sys.unraisablehook = previous


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception of `err`'s cause chain (tensorstore's own message, not orbax's)."""
    seen = {id(err)}
    while err.__cause__ is not None and id(err.__cause__) not in seen:
        err = err.__cause__
        seen.add(id(err))
    return err


class RunCheckpoints:
    """Two orbax CheckpointManagers under `<workdir>/checkpoints/{latest,best}`."""

    def __init__(self, workdir: str):
        self.root = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        self.latest = ocp.CheckpointManager(os.path.join(self.root, "latest"), options=options)
        self.best = ocp.CheckpointManager(os.path.join(self.root, "best"), options=options)

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

    def _read(self, manager, step, args):
        """manager.restore(step, args), any failure turned into one line naming the folder."""
        folder = os.path.join(os.fspath(manager.directory), str(step))
        try:
            return manager.restore(step, args=args)
        except Exception as err:  # orbax/tensorstore raise many types for a damaged checkpoint
            _drain_stray_reads()
            root = _root_cause(err)
            cause = (str(root).strip().splitlines() or [""])[0][:240]
            raise ValueError(
                f"checkpoint {folder} could not be read ({type(root).__name__}: {cause}); it is "
                f"damaged or incomplete. Delete the checkpoints folder {self.root} to start the "
                "run over, or use a new --workdir.") from None

    def _restore(self, manager, like) -> Optional[Restored]:
        step = manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self._read(manager, step, ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return Restored(step=int(step), state=out.state, meta=self._meta_dict(manager, step,
                                                                              out.meta))

    def _meta_dict(self, manager, step, meta):
        if not isinstance(meta, dict):
            folder = os.path.join(os.fspath(manager.directory), str(step), "meta")
            raise ValueError(
                f"checkpoint {folder} holds a {type(meta).__name__}, not the JSON record a "
                f"training loop writes. Delete the checkpoints folder {self.root} to start the "
                "run over, or use a new --workdir.")
        return dict(meta)

    def restore_latest(self, like) -> Optional[Restored]:
        """Latest checkpoint restored into the structure/shardings of `like`, or None.

        Raises:
          ValueError: the checkpoint cannot be read (names its folder and what to do).
        """
        return self._restore(self.latest, like)

    def restore_best(self, like) -> Optional[Restored]:
        return self._restore(self.best, like)

    def latest_meta(self) -> Optional[Restored]:
        """The latest checkpoint's step and meta record (state None, no arrays read), or None.

        Trainers compare the saved config with theirs before restoring arrays.

        Raises:
          ValueError: the meta record cannot be read (names its folder and what to do).
        """
        step = self.latest.latest_step()
        if step is None:
            return None
        out = self._read(self.latest, step, ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return Restored(step=int(step), state=None,
                        meta=self._meta_dict(self.latest, step, out.meta))

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.wait()
        self.latest.close()
        self.best.close()
