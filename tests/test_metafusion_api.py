"""The curated `metafusion_jax.metafusion` namespace: every name in __all__ resolves, the trainer
loads lazily, and the pieces compose on a researcher's own arrays (from_arrays -> resolve ->
build_cohort -> one mutual-learning step)."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

import metafusion_jax.metafusion as mf
from metafusion_jax.configs import metafusion as mf_configs
from metafusion_jax.metafusion import inputs


def test_every_public_name_resolves():
    for name in mf.__all__:
        assert getattr(mf, name) is not None, name
    assert "train_and_evaluate" in dir(mf)


def test_trainer_is_imported_lazily_and_without_a_cycle():
    code = ("import sys, metafusion_jax.metafusion as m; "
            "assert 'metafusion_jax.metafusion.train' not in sys.modules; "
            "print(m.train_and_evaluate.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "metafusion_jax.metafusion.train"


def test_pieces_compose_on_own_arrays(fast_compile):
    rng = np.random.default_rng(0)
    xs, y = [rng.normal(size=(40, 12)), rng.normal(size=(40, 5))], rng.normal(size=40)
    data = mf.MultiModalData.from_arrays(xs, y, task="regression", seed=0)
    config, datas = inputs.resolve(mf_configs.get_config("default"), data, [0])
    assert config.cohort.mod_outs == ((0, 3, 6, 12), (0, 1, 3, 5))   # 1.25 -> 1, 2.5 -> 3
    spec, model, params, stacked = inputs.build_cohort(config, datas, jax.random.key(0)[None])
    assert spec.num_members == 15
    step = mf.make_cohort_step(model.apply, task=config.task)
    p = jax.tree.map(lambda a: a[0], params)
    xb = tuple(x[0] for x in stacked["x_train"])
    yb = stacked["y_train"][0]
    p2, _, aux = jax.jit(step.step)(p, step.init_opt(p), xb, yb, jnp.ones(yb.shape[0]),
                                    jnp.asarray(1.0), jnp.ones(spec.num_members))
    assert aux["task"].shape == (spec.num_members,) and bool(jnp.all(jnp.isfinite(aux["task"])))
    assert float(jnp.sum(step.val_task(p2, xb, yb))) < float(jnp.sum(step.val_task(p, xb, yb)))
