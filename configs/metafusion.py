"""The `--config=configs/metafusion.py:<variant>` file of the binaries: the package's configs.

Every variant lives in `metafusion_jax.configs.metafusion` (importable without a checkout); this file
re-exports it so absl's `config_flags` can load it by path. See that module for the variants.
"""
from metafusion_jax.configs.metafusion import *  # noqa: F401,F403
from metafusion_jax.configs.metafusion import get_config  # noqa: F401
