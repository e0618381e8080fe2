"""Every config variant of both methods, importable from the installed package.

    import metafusion_jax as mfj
    config = mfj.configs.metammf.get_config("ml100k")
    config = mfj.configs.metafusion.get_config("setting_2_2")

The top-level `configs/*.py` files of a checkout re-export these for the binaries' `--config=`.
"""
from metafusion_jax.configs import metafusion
from metafusion_jax.configs import metammf

__all__ = ["metafusion", "metammf"]
