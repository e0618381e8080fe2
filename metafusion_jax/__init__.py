"""metafusion_jax: dynamic multimodal fusion in JAX (MetaMMF and Meta Fusion)."""

__version__ = "0.1.0"
