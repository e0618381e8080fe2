"""Meta Fusion (Liang, Qu, Shahbaba 2025) in JAX: the pieces a researcher composes.

The whole method on your own arrays (K modalities X_k [N, D_k], targets y [N]):

    import metafusion_jax as mfj
    data = mfj.metafusion.MultiModalData.from_arrays([x_1, x_2], y, task="classification")
    config = mfj.configs.metafusion.get_config("default")   # dims, task, classes from the data
    results = mfj.metafusion.train_and_evaluate(config, "/tmp/mf/mine", data=data)

Or piece by piece (letters: M members, K modalities, D_k widths, B batch, C outputs):

* Data: `MultiModalData` (train / val / test `Split`s; `MultiModalData.from_arrays`).
* Cohort: `make_cohort_spec(mod_outs, dims) -> CohortSpec` (one member per combination of
  per-modality dims), `make_cohort(spec, extractor, hidden=, out_dim=) -> Cohort(init, apply)`
  whose params are one pytree with leading axis M (`stack` / `unstack` move between a list of
  members and the stack).
* Extractors: `make_identity_extractor`, `make_pca_extractor` (inputs from `pca_inputs`),
  `make_separate_extractor`, `make_encoder_extractor` (chains from `pretrain_chain`).
* Mutual learning: `task_loss`, `divergence_matrix` [M, M], `joint_loss`, `make_cohort_step`
  (M Adams over the stacked params); `make_program` (a whole rho-run as one jitted
  epoch loop over `lax.scan`ned batches, vmapped over rho and seeds, runnable in epoch chunks),
  `run_stage` (one stage in checkpointable chunks -> `StageRecord`), `run_schedule` (rho = 0,
  the weights, every rho > 0, the B1 warm start -> `ScheduleResult`), `choose_rho`.
* Divergence weights: `clustering_weights`, `adversarial_weights`, `uniform_weights`.
* Ensembles on member outputs [M, N, C]: `best_single`, `simple_average`, `weighted_average`,
  `inverse_loss_weights`, `greedy_selection` / `greedy_predict` (the paper's "Meta Fusion"),
  `fit_stacking` / `stacking_predict`, `majority_voting`, `weighted_voting`.
* The trainer: `train_and_evaluate(config, workdir, ...)` (imported on first use).
"""
from metafusion_jax.data.multiview.container import MultiModalData
from metafusion_jax.data.multiview.container import Split
from metafusion_jax.metafusion.cohort import Cohort
from metafusion_jax.metafusion.cohort import CohortSpec
from metafusion_jax.metafusion.cohort import make_cohort
from metafusion_jax.metafusion.cohort import make_cohort_spec
from metafusion_jax.metafusion.cohort import stack
from metafusion_jax.metafusion.cohort import unstack
from metafusion_jax.metafusion.ensembles import best_single
from metafusion_jax.metafusion.ensembles import fit_stacking
from metafusion_jax.metafusion.ensembles import greedy_predict
from metafusion_jax.metafusion.ensembles import greedy_selection
from metafusion_jax.metafusion.ensembles import inverse_loss_weights
from metafusion_jax.metafusion.ensembles import majority_voting
from metafusion_jax.metafusion.ensembles import simple_average
from metafusion_jax.metafusion.ensembles import stacking_predict
from metafusion_jax.metafusion.ensembles import weighted_average
from metafusion_jax.metafusion.ensembles import weighted_voting
from metafusion_jax.metafusion.extractors import make_encoder_extractor
from metafusion_jax.metafusion.extractors import make_identity_extractor
from metafusion_jax.metafusion.extractors import make_pca_extractor
from metafusion_jax.metafusion.extractors import make_separate_extractor
from metafusion_jax.metafusion.extractors import pca_inputs
from metafusion_jax.metafusion.extractors import pretrain_chain
from metafusion_jax.metafusion.mutual import divergence_matrix
from metafusion_jax.metafusion.mutual import joint_loss
from metafusion_jax.metafusion.mutual import make_cohort_step
from metafusion_jax.metafusion.mutual import task_loss
from metafusion_jax.metafusion.program import choose_rho
from metafusion_jax.metafusion.program import make_program
from metafusion_jax.metafusion.program import ScheduleResult
from metafusion_jax.metafusion.program import run_schedule
from metafusion_jax.metafusion.program import run_stage
from metafusion_jax.metafusion.records import RunState
from metafusion_jax.metafusion.records import StageRecord
from metafusion_jax.metafusion.weights import adversarial_weights
from metafusion_jax.metafusion.weights import clustering_weights
from metafusion_jax.metafusion.weights import uniform_weights

__all__ = [
    "Cohort",
    "CohortSpec",
    "MultiModalData",
    "RunState",
    "ScheduleResult",
    "Split",
    "StageRecord",
    "adversarial_weights",
    "best_single",
    "choose_rho",
    "clustering_weights",
    "divergence_matrix",
    "fit_stacking",
    "greedy_predict",
    "greedy_selection",
    "inverse_loss_weights",
    "joint_loss",
    "majority_voting",
    "make_cohort",
    "make_cohort_spec",
    "make_cohort_step",
    "make_encoder_extractor",
    "make_identity_extractor",
    "make_pca_extractor",
    "make_program",
    "make_separate_extractor",
    "pca_inputs",
    "pretrain_chain",
    "run_schedule",
    "run_stage",
    "simple_average",
    "stack",
    "stacking_predict",
    "task_loss",
    "train_and_evaluate",
    "uniform_weights",
    "unstack",
    "weighted_average",
    "weighted_voting",
]


def __getattr__(name):
    # The trainer (orbax, writers, tqdm) loads on first use, so the library pieces import
    # without it and without a cycle (train.py imports this package's modules).
    if name == "train_and_evaluate":
        from metafusion_jax.metafusion.train import train_and_evaluate
        return train_and_evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"train_and_evaluate"})
