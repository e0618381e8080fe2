"""metafusion_jax: dynamic multimodal fusion (MetaMMF, Meta Fusion) in JAX."""
import setuptools

# Versions checked to resolve together on CPython 3.11 (see README "Stack").
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "tensorflow-datasets==4.9.10",
    "array-record>=0.8",
    "chex==0.1.92",
    "absl-py==2.5.1",
    "ml_collections==1.1.0",
    "numpy>=2.0",
    "scipy>=1.11",
    "scikit-learn>=1.4",
    "tqdm>=4.60",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
]

setuptools.setup(
    name="metafusion_jax",
    version="0.1.0",
    description=(
        "Functional JAX reimplementation of MetaMMF (meta-learned item-specific "
        "multimodal fusion for recommendation) and Meta Fusion (cohort mutual learning)."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["metafusion_jax", "metafusion_jax.*"]),
    # the native CPU top-k's source, compiled on first use (metafusion_jax/metrics/native_topk.py)
    package_data={"metafusion_jax.metrics": ["native/*.cc"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", "nbmake>=1.5", "nbclient>=0.10", "ipykernel>=6"],
    },
    license="Apache-2.0",
)
