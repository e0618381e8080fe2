r"""Fusion forward+backward: the library's vmapped per-item `apply` vs hand-batched einsums.

`metammf.layers.make_fusion(...).apply` is `jax.vmap` of a per-item function written in factored
form (STYLE.md, "one item, one member"). This checks that the vmap lowers to what hand-batched
algebra costs (spec section 8.3; the reference for the comparison is written out below, as the
library wrote it before). Both are jitted and timed side by side in one process, interleaved
(vmapped, hand, vmapped, hand, ...), as value_and_grad of a scalar of the fused output w.r.t. the
fusion params and the meta vectors s. Medians over repeats; the target is vmapped/hand <= 1.1.

Settings, at MovieLens size (I = 5,986 items, S = 5):
  v0530_dense  dense 160 -> 80 -> 32                 (the reference's runnable dims)
  head_cp      cp R=16, 2276 -> 1024 -> 512 -> 256 -> 32  (the paper / HEAD dims)
  head_dense   dense at the HEAD dims                (about 0.6 TFLOP per forward+backward)
About 3 minutes on one core.

    taskset -c 0 env XLA_FLAGS="--xla_cpu_multi_thread_eigen=false \
        intra_op_parallelism_threads=1" python benchmarks/bench_fusion.py

Prints a table and writes benchmarks/results/fusion.json.
"""
import json
import os
import platform
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from metafusion_jax.metammf import layers

SETTINGS = {
    "v0530_dense": ("dense", (160, 80, 32), 30),          # (kind, dims, repeats)
    "head_cp": ("cp", (2276, 1024, 512, 256, 32), 5),
    "head_dense": ("dense", (2276, 1024, 512, 256, 32), 2),  # ~20 s a call on one core
}
N_ITEMS, S_DIM, RANK = 5986, 5, 16

_SETTINGS = flags.DEFINE_list("settings", list(SETTINGS), "Which settings to run.")
_REPEAT_SCALE = flags.DEFINE_float("repeat_scale", 1.0, "Multiplies every setting's repeats.")
_N_ITEMS = flags.DEFINE_integer("n_items", N_ITEMS, "I, items fused per call.")
_OUT = flags.DEFINE_string("out", os.path.join(os.path.dirname(__file__), "results",
                                               "fusion.json"), "Where to write the results.")


# ---- the hand-batched reference (the algebra of spec 8.3, written over all items at once) -------

def _hand_layer(kind, p, x, s):
    if kind == "dense":
        t = p["T"]
        n_s, din, dout = t.shape
        if dout >= din:
            kr = (s[:, :, None] * x[:, None, :]).reshape(x.shape[0], n_s * din)
            dyn = kr @ t.reshape(n_s * din, dout)
        else:
            dyn = jnp.einsum("nk,nko->no", s, jnp.einsum("ni,kio->nko", x, t))
        return x @ p["M"] + dyn
    if kind == "cp":
        return x @ p["M"] + ((x @ p["A"]) * (s @ p["C"].T)) @ p["B"]
    raise ValueError(f"no hand-batched reference for {kind!r}")


def hand_apply(kind, params, x, s):
    h = x
    for n, p in enumerate(params):
        h = _hand_layer(kind, p, layers.leaky_relu(h) if n else h, s)
    return h


def _timed(fn, *args):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def run_setting(name, n_items, repeat_scale):
    kind, dims, repeats = SETTINGS[name]
    repeats = max(2, int(round(repeats * repeat_scale)))
    fusion = layers.make_fusion(kind, dims, S_DIM, RANK)
    k_p, k_x, k_s, k_g = jax.random.split(jax.random.key(0), 4)
    params = fusion.init(k_p)
    x = jax.random.normal(k_x, (n_items, dims[0]), jnp.float32)
    s = jax.random.normal(k_s, (n_items, S_DIM), jnp.float32)
    cot = jax.random.normal(k_g, (n_items, dims[-1]), jnp.float32)

    def fwd_bwd(apply):
        def loss(p, s):
            return jnp.sum(apply(p, x, s) * cot)
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    variants = {"vmapped": fwd_bwd(fusion.apply),
                "hand": fwd_bwd(lambda p, x, s: hand_apply(kind, p, x, s))}
    compile_s, out = {}, {}
    for v, f in variants.items():  # compile + first run; its output checks the two agree
        t = time.perf_counter()
        out[v] = jax.block_until_ready(f(params, s))
        compile_s[v] = time.perf_counter() - t
    loss_diff = abs(float(out["vmapped"][0]) - float(out["hand"][0]))
    grad_diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(out["vmapped"][1]), jax.tree.leaves(out["hand"][1])))
    times = {v: [] for v in variants}
    for _ in range(repeats):
        for v, f in variants.items():
            times[v].append(_timed(f, params, s))
    med = {v: float(np.median(t)) for v, t in times.items()}
    return {"setting": name, "kind": kind, "dims": list(dims), "n_items": n_items, "s_dim": S_DIM,
            "rank": RANK if kind == "cp" else None, "repeats": repeats,
            "vmapped_median_s": med["vmapped"], "hand_median_s": med["hand"],
            "ratio_vmapped_over_hand": med["vmapped"] / med["hand"],
            "compile_plus_first_s": compile_s, "times_s": times,
            "max_abs_diff_loss": loss_diff, "max_abs_diff_grads": grad_diff}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = sorted(set(_SETTINGS.value) - set(SETTINGS))
    if unknown:
        raise app.UsageError(f"--settings must be among {list(SETTINGS)}, got {unknown}")
    rows = []
    for name in _SETTINGS.value:
        rows.append(run_setting(name, _N_ITEMS.value, _REPEAT_SCALE.value))
        print(f"{name}: vmapped/hand = {rows[-1]['ratio_vmapped_over_hand']:.3f}", flush=True)
    print(f"fusion forward+backward, I={_N_ITEMS.value}, S={S_DIM}; medians "
          f"(XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})")
    print(f"{'setting':<13}{'dims':<28}{'reps':>5}{'vmapped s':>11}{'hand s':>10}"
          f"{'vmap/hand':>11}{'max |dgrad|':>13}")
    for r in rows:
        dims = "->".join(map(str, r["dims"])) + (f" R={r['rank']}" if r["rank"] else "")
        print(f"{r['setting']:<13}{dims:<28}{r['repeats']:>5}{r['vmapped_median_s']:>11.4f}"
              f"{r['hand_median_s']:>10.4f}{r['ratio_vmapped_over_hand']:>11.3f}"
              f"{r['max_abs_diff_grads']:>13.2e}")
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w", encoding="utf-8") as f:
        json.dump({"jax": jax.__version__, "machine": platform.machine(),
                   "xla_flags": os.environ.get("XLA_FLAGS", ""),
                   "cpu_affinity": sorted(os.sched_getaffinity(0)), "target_ratio": 1.1,
                   "rows": rows}, f, indent=2)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
