"""MetaMMF (Liu et al., TOIS 2023): meta-learned, item-specific multimodal fusion for recommendation.

The pieces a researcher composes, from the bottom up (every factory returns a NamedTuple of
un-jitted pure functions; params are plain dicts; you own jit):

  fusion     `make_fusion(kind, dims, s_dim, rank) -> Fusion(init, apply, apply_one)`, with
             `FUSION_KINDS` (dense | cp | cp_repo | static, one `FusionLayer` each) and the meta
             extractor `meta_info_init` / `meta_info` that gives each item its s_i [S].
  models     `Recommender(init, embed, prepare_inputs)`; `make_metammf`, `make_static_mlp` and the
             baselines `make_vbpr`, `make_lightgcn`, `make_mmgcn`, `make_lattice`, `make_freedom`
             and the floors `make_popularity`, `make_random`; `MODELS` maps
             config.model.name to a `ModelSpec(factory, options, config_group)`.
  data       `InteractionData` (`InteractionData.from_pairs(...)` for your own arrays),
             `prepare_item_features` (concatenation + optional per-modality PCA),
             `make_bipartite_graph` (the user-item train graph), `make_bpr_sampler`.
  training   `bpr_loss`, `make_optimizer` (Adam + torch-style coupled L2), `make_train_step`,
             and the whole loop `train_and_evaluate(config, workdir, data=None)` with its
             `validate_config`.

    import metafusion_jax as mfj
    fusion = mfj.metammf.make_fusion("cp", dims=(160, 80, 32), s_dim=5, rank=16)
"""
from metafusion_jax.data.rec.interactions import InteractionData
from metafusion_jax.metammf.baselines import make_lightgcn
from metafusion_jax.metammf.baselines import make_vbpr
from metafusion_jax.metammf.floors import make_popularity
from metafusion_jax.metammf.floors import make_random
from metafusion_jax.metammf.freedom import make_freedom
from metafusion_jax.metammf.lattice import make_lattice
from metafusion_jax.metammf.mmgcn_model import make_mmgcn
from metafusion_jax.metammf.features import prepare_item_features
from metafusion_jax.metammf.graph import make_bipartite_graph
from metafusion_jax.metammf.layers import FUSION_KINDS
from metafusion_jax.metammf.layers import Fusion
from metafusion_jax.metammf.layers import FusionLayer
from metafusion_jax.metammf.layers import Recommender
from metafusion_jax.metammf.layers import make_fusion
from metafusion_jax.metammf.layers import meta_info
from metafusion_jax.metammf.layers import meta_info_init
from metafusion_jax.metammf.losses import bpr_loss
from metafusion_jax.metammf.models import MODELS
from metafusion_jax.metammf.models import ModelSpec
from metafusion_jax.metammf.models import make_metammf
from metafusion_jax.metammf.models import make_static_mlp
from metafusion_jax.metammf.sampling import make_bpr_sampler
from metafusion_jax.metammf.train import make_optimizer
from metafusion_jax.metammf.train import make_train_step
from metafusion_jax.metammf.train import train_and_evaluate
from metafusion_jax.metammf.inputs import validate_config

__all__ = [
    # fusion layers
    "FUSION_KINDS",
    "Fusion",
    "FusionLayer",
    "make_fusion",
    "meta_info",
    "meta_info_init",
    # models
    "MODELS",
    "ModelSpec",
    "Recommender",
    "make_freedom",
    "make_lattice",
    "make_lightgcn",
    "make_metammf",
    "make_mmgcn",
    "make_popularity",
    "make_random",
    "make_static_mlp",
    "make_vbpr",
    # data
    "InteractionData",
    "make_bipartite_graph",
    "make_bpr_sampler",
    "prepare_item_features",
    # training
    "bpr_loss",
    "make_optimizer",
    "make_train_step",
    "train_and_evaluate",
    "validate_config",
]
