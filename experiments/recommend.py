r"""Prints the top-k items per user of a finished MetaMMF run, and optionally exports embeddings.

    python experiments/recommend.py --workdir=/tmp/mm_ml100k --users=0,5,17 --k=10 \
        [--exclude_val] [--export=emb.npz]

Scores come from the run's best checkpoint; the user's train items (and with --exclude_val, val
items) are never recommended. MovieLens-100k items print with their dataset id and title.
"""
from absl import app
from absl import flags
from absl import logging

from metafusion_jax.metammf import recommend

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of a finished train_metammf.py run.")
_USERS = flags.DEFINE_list("users", ["0"], "0-based user ids, e.g. 0,5,17.")
_K = flags.DEFINE_integer("k", 10, "Items per user.")
_EXCLUDE_VAL = flags.DEFINE_bool("exclude_val", False, "Also exclude validation items.")
_EXPORT = flags.DEFINE_string("export", None, "Write user/item embeddings to this .npz file.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    try:
        users = [int(u) for u in _USERS.value]
    except ValueError:
        raise app.UsageError(f"--users must be comma-separated ints, got {_USERS.value}")
    run = recommend.load_run(_WORKDIR.value)
    recs = recommend.recommend(run, users, k=_K.value, exclude_val=_EXCLUDE_VAL.value)
    print(f"{run.config.model.name} on {run.data.name}, best epoch {run.best_epoch}: top {_K.value}"
          f" per user (train{'/val' if _EXCLUDE_VAL.value else ''} items excluded)")
    print(recommend.format_recommendations(recs))
    if _EXPORT.value:
        path = recommend.export_embeddings(run, _EXPORT.value)
        print(f"embeddings: user_emb {run.user_emb.shape}, item_emb {run.item_emb.shape} -> "
              f"{path}")


if __name__ == "__main__":
    app.run(main)
