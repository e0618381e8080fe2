"""metafusion_jax: dynamic multimodal fusion in JAX (MetaMMF and Meta Fusion).

The top level holds the pieces most researchers reach for first; everything else is imported from
its module (`metafusion_jax.metammf.layers`, `metafusion_jax.metafusion.mutual`, ...).
"""
from metafusion_jax.data.rec.interactions import InteractionData
from metafusion_jax.data.rec.interactions import per_user_split
from metafusion_jax.data.rec.interactions import validate_interactions
from metafusion_jax.data.rec.mmgcn import load_mmgcn
from metafusion_jax.data.rec.mmrec import load_mmrec
from metafusion_jax.data.rec.movielens import load_ml100k
from metafusion_jax.metammf.sampling import make_bpr_sampler
from metafusion_jax.metammf.sampling import static_triples
from metafusion_jax.data.rec.synthetic import make_synthetic_microvideo
from metafusion_jax.metrics.ranking import ranking_metrics
from metafusion_jax import configs

__version__ = "0.1.0"

__all__ = [
    "InteractionData",
    "configs",
    "load_ml100k",
    "load_mmgcn",
    "load_mmrec",
    "make_bpr_sampler",
    "make_synthetic_microvideo",
    "per_user_split",
    "ranking_metrics",
    "static_triples",
    "validate_interactions",
]
