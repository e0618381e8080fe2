"""A native exact top-k for XLA's CPU backend (an XLA FFI custom call), with a pure-XLA fallback.

XLA CPU lowers `lax.top_k` to a custom call that invokes a comparator per element: ~2.8 ns an
element plus ~5 us a row of heap work at k = 20 (benchmarks/README.md), which made the top-k,
not the score GEMM, the cost of a full-ranking evaluation. `native/topk.cc` is one pass per row
with a vectorised threshold check; its results equal `lax.top_k`'s (IEEE total order: NaN above
+inf, +0 above -0; ties to the lower index), which tests/test_native_topk.py checks.

Build. The kernel is compiled on first use with the C++ compiler on PATH (`$CXX`, else `g++`,
else `c++`) against jaxlib's FFI headers (`jax.ffi.include_dir()`), into
`$METAFUSION_JAX_CACHE` (default `~/.cache/metafusion_jax`)`/native/<hash>/`, the hash covering
the source, the compiler and jaxlib's version; a second process loads the cached library. The
file is written under a temporary name and renamed, so concurrent first uses (pytest-xdist)
cannot load a half-written library. No compiler, a failed build or `METAFUSION_JAX_NATIVE=0`:
`available()` is False and callers keep the pure-XLA path (`ranking.top_k` does), with one
warning that says why.

The custom call only exists on CPU: callers pick it for CPU devices only (`ranking.top_k` takes
the platform of the evaluation's mesh), so GPU and TPU programs never see it. It has no
derivative (ranking needs none).
"""
import ctypes
import functools
import hashlib
import logging
import os
import pathlib
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

TARGET = "metafusion_topk_f32"
_SOURCE = pathlib.Path(__file__).parent / "native" / "topk.cc"
_FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-w")
_registered = []  # the library registered in this process (XLA takes one registration a name)


def _compiler():
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_root() -> pathlib.Path:
    root = os.environ.get("METAFUSION_JAX_CACHE")
    return pathlib.Path(root) if root else pathlib.Path.home() / ".cache" / "metafusion_jax"


def build(cxx: str) -> pathlib.Path:
    """Compiles topk.cc (once per source/compiler/jaxlib) and returns the library's path."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                             check=False).stdout.splitlines()[:1]
    digest = hashlib.sha256(_SOURCE.read_bytes())
    digest.update(repr((version, _FLAGS, jax.__version__, jax.lib.__version__)).encode())
    out_dir = _cache_root() / "native" / digest.hexdigest()[:16]
    lib = out_dir / "libmetafusion_topk.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        cmd = [cxx, *_FLAGS, "-I", jax.ffi.include_dir(), str(_SOURCE), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return lib


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True once the kernel is built, loaded and registered for the CPU platform (cached)."""
    if os.environ.get("METAFUSION_JAX_NATIVE", "1") == "0":
        return False
    if _registered:
        return True
    cxx = _compiler()
    if cxx is None:
        logging.warning("metafusion_jax: no C++ compiler (g++/c++ or $CXX) on PATH, so full-"
                        "ranking top-k uses XLA's slower CPU top_k. Install g++ to speed it up.")
        return False
    try:
        library = ctypes.CDLL(str(build(cxx)))
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.MetafusionTopKF32),
                                    platform="cpu")
        _registered.append(library)
    except (OSError, RuntimeError, AttributeError) as err:
        logging.warning("metafusion_jax: the native top-k did not build or load (%s); using "
                        "XLA's CPU top_k. Set METAFUSION_JAX_NATIVE=0 to skip the attempt.", err)
        return False
    return True


def top_k(x: jnp.ndarray, k: int):
    """Exact top-k over the last axis, CPU only (call `available()` first).

    Args:
        x: float32 [..., N].
        k: static int, 1 <= k <= N.

    Returns:
        (values float32 [..., k], indices int32 [..., k]), as `jax.lax.top_k`.

    Raises:
        ValueError: on a non-float32 input or k outside [1, N].
    """
    if x.dtype != jnp.float32:
        raise ValueError(f"native top_k takes float32, got {x.dtype}; cast the scores first.")
    if x.ndim < 1 or not 1 <= int(k) <= x.shape[-1]:
        raise ValueError(f"k must be in [1, {x.shape[-1] if x.ndim else 0}] (the last axis of "
                         f"shape {x.shape}), got {k}.")
    out = (jax.ShapeDtypeStruct(x.shape[:-1] + (int(k),), jnp.float32),
           jax.ShapeDtypeStruct(x.shape[:-1] + (int(k),), jnp.int32))
    return jax.ffi.ffi_call(TARGET, out, vmap_method="broadcast_all")(x, k=np.int64(k))
