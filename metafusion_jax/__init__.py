"""metafusion_jax: dynamic multimodal fusion in JAX (MetaMMF and Meta Fusion).

    import metafusion_jax as mfj

    # Meta Fusion on your own arrays (K modalities [N, D_k], targets [N])
    data = mfj.metafusion.MultiModalData.from_arrays([x_a, x_b], y, task="classification")
    results = mfj.metafusion.train_and_evaluate(mfj.configs.metafusion.get_config("default"),
                                                "/tmp/mf", data=data)

    # MetaMMF on your own (user, item) pairs and item features
    data = mfj.InteractionData.from_pairs(n_users=U, n_items=I, train=..., val=..., test=...,
                                          features={"visual": f_v, "textual": f_t})
    results = mfj.metammf.train_and_evaluate(mfj.configs.metammf.get_config("ml100k"),
                                             "/tmp/mm", data=data)

`mfj.metammf` and `mfj.metafusion` list the pieces each method is built from (`__all__`);
`mfj.configs` holds every config variant. The top level also keeps the recommendation data
loaders and the full-ranking metrics.
"""
from metafusion_jax import configs
from metafusion_jax import metafusion
from metafusion_jax import metammf
from metafusion_jax.data.multiview.container import MultiModalData
from metafusion_jax.data.rec.interactions import InteractionData
from metafusion_jax.data.rec.interactions import per_user_split
from metafusion_jax.data.rec.interactions import validate_interactions
from metafusion_jax.data.rec.mmgcn import load_mmgcn
from metafusion_jax.data.rec.mmrec import load_mmrec
from metafusion_jax.data.rec.movielens import load_ml100k
from metafusion_jax.data.rec.synthetic import make_synthetic_microvideo
from metafusion_jax.metammf.sampling import make_bpr_sampler
from metafusion_jax.metammf.sampling import static_triples
from metafusion_jax.metrics.ranking import ranking_metrics

__version__ = "0.1.0"

__all__ = [
    "InteractionData",
    "MultiModalData",
    "configs",
    "load_ml100k",
    "load_mmgcn",
    "load_mmrec",
    "make_bpr_sampler",
    "make_synthetic_microvideo",
    "metafusion",
    "metammf",
    "per_user_split",
    "ranking_metrics",
    "static_triples",
    "validate_interactions",
]
