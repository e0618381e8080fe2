"""metafusion_jax: dynamic multimodal fusion in JAX (MetaMMF and Meta Fusion).

The top level holds the pieces most researchers reach for first; everything else is imported from
its module (`metafusion_jax.metammf.layers`, `metafusion_jax.metafusion.mutual`, ...).
"""
from metafusion_jax.data.interactions import InteractionData
from metafusion_jax.data.interactions import per_user_split
from metafusion_jax.data.interactions import validate_interactions
from metafusion_jax.data.mmgcn import load_mmgcn
from metafusion_jax.data.mmrec import load_mmrec
from metafusion_jax.data.movielens import load_ml100k
from metafusion_jax.data.sampling import make_bpr_sampler
from metafusion_jax.data.sampling import static_triples
from metafusion_jax.data.synthetic_rec import make_synthetic_microvideo
from metafusion_jax.metrics.ranking import ranking_metrics

__version__ = "0.1.0"

__all__ = [
    "InteractionData",
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
