"""Top-k recommendations and embedding export from a finished MetaMMF run's best checkpoint.

    run = load_run("/tmp/mm_ml100k")                      # rebuilds data + model, restores best
    recs = recommend(run, users=[0, 5, 17], k=10)         # train items excluded
    print(format_recommendations(recs))
    export_embeddings(run, "emb.npz")                     # user_emb [U, H], item_emb [I, H]

The run is rebuilt from its results.json config (the same data and model as trained; a run on
your own data needs `data=`), and its data fingerprint is checked against the checkpoint's.
Items held out by a cold-start run get their id parameters zeroed (`coldstart.zero_item_ids`),
so they are ranked from content. Ids are the model's 0-based ids; where the loader has the
dataset's own ids (MovieLens-100k: user and item ids, movie titles), `Recommendations` carries
them as labels.
"""
import json
import os
from typing import NamedTuple, Optional

import jax
import ml_collections
import numpy as np

from metafusion_jax.data.rec import interactions
from metafusion_jax.data.rec import movielens
from metafusion_jax.metammf import coldstart
from metafusion_jax.metammf import train
from metafusion_jax.training import checkpoints


class LoadedRun(NamedTuple):
    """A finished run rebuilt for inference.

    Attributes:
        workdir: the run folder.
        config: its ConfigDict.
        data: the InteractionData it trained on (the warm part of a cold-start run).
        user_emb: float32 [U, H] from the best params (eval mode).
        item_emb: float32 [I, H] (cold items: id parameters zeroed).
        user_labels: optional list of U dataset user ids (str), else None.
        item_labels: optional list of I dataset item labels (str), else None.
        best_epoch: the epoch of the best checkpoint.
        params: the best params (cold items' id parameters zeroed).
        inputs: the model's inputs dict ("features" [I, F], "graph", ...).
    """

    workdir: str
    config: object
    data: object
    user_emb: np.ndarray
    item_emb: np.ndarray
    user_labels: Optional[list]
    item_labels: Optional[list]
    best_epoch: int
    params: dict
    inputs: dict


class Recommendations(NamedTuple):
    """Top-k per user: users int [N], items int [N, k], scores float32 [N, k], best first;
    user_labels / item_labels: the dataset's own ids (lists of str) or None."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    user_labels: Optional[list]
    item_labels: Optional[list]


def ml100k_labels(directory=None):
    """(user ids, "item id: title") of MovieLens-100k in the loader's 0-based order."""
    directory = directory or movielens.recbole_ml100k_dir()
    inter_path, item_path = (os.path.join(directory, f) for f in movielens.FILES[:2])
    header, rows = movielens._read_table(item_path)  # pylint: disable=protected-access
    tokens = [r[header.index("item_id")] for r in rows]
    titles = [r[header.index("movie_title")] for r in rows]
    order = sorted(range(len(tokens)), key=lambda k: int(tokens[k]))
    items = [f"{tokens[k]}: {titles[k]}" for k in order]
    header, rows = movielens._read_table(inter_path)  # pylint: disable=protected-access
    users = sorted({int(r[header.index("user_id")]) for r in rows})
    return [str(u) for u in users], items


def _read_results(workdir):
    path = os.path.join(os.fspath(workdir), "results.json")
    if not os.path.isfile(path):
        raise ValueError(
            f"{workdir} holds no finished MetaMMF run (no results.json). Train it to the end "
            "with experiments/train_metammf.py --workdir=... (a paused or killed run resumes "
            "there), then recommend.")
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    if not isinstance(results.get("config"), dict) or "model" not in results["config"]:
        raise ValueError(f"{path} is not a MetaMMF results file (no config.model); is "
                         f"{workdir} a Meta Fusion run?")
    return results


def load_run(workdir, data=None):
    """Rebuilds a finished run's data and model and restores its best checkpoint.

    Args:
        workdir: folder of a finished `train_and_evaluate` run.
        data: the InteractionData the run was given, for a run on your own data.

    Returns:
        LoadedRun.

    Raises:
        ValueError: no finished run in workdir, no best checkpoint, or data other than the
            run's (fingerprints differ).
    """
    results = _read_results(workdir)
    config = ml_collections.ConfigDict(results["config"])
    run = train.prepare(config, data)
    ckpts = checkpoints.RunCheckpoints(workdir)
    try:
        best = ckpts.restore_best(run.state)
    finally:
        ckpts.close()
    if best is None:
        raise ValueError(f"{workdir} has a results.json but no best checkpoint "
                         "(checkpoints/best). Re-run training in a fresh workdir.")
    saved = best.meta.get("config", {}).get(train.FINGERPRINT_FIELD)
    now = interactions.fingerprint(run.data)
    if saved is not None and saved != now:
        raise ValueError(
            f"the data rebuilt for {workdir} is not the data it trained on (fingerprint saved "
            f"{saved!r}, now {now!r}). For a run on your own data pass data= the same "
            "InteractionData.")
    params = best.state["params"]
    if run.cold is not None:
        params = coldstart.zero_item_ids(params, config.model.name, run.cold.cold_items)
    user_emb, item_emb = jax.jit(lambda p, x: run.model.embed(p, x, jax.random.key(0), False))(
        params, run.inputs)
    labels = (None, None)
    if config.data.source == "ml100k" and data is None and config.data.dir == "":
        labels = ml100k_labels()
    return LoadedRun(os.fspath(workdir), config, run.data, np.asarray(user_emb, np.float32),
                     np.asarray(item_emb, np.float32), labels[0], labels[1],
                     int(results["best_epoch"]), params, run.inputs)


def recommend(run, users, k=10, exclude_val=False):
    """Top-k items per user by score <user_emb, item_emb>, the user's train items excluded.

    Args:
        run: a LoadedRun.
        users: int ids in [0, U).
        k: items per user, 1 <= k <= I minus the most items excluded for one of the users.
        exclude_val: also exclude the user's validation items.

    Returns:
        Recommendations (ties broken towards the lower item id).

    Raises:
        ValueError: an unknown user id, or k out of range.
    """
    n_users, n_items = run.user_emb.shape[0], run.item_emb.shape[0]
    users = np.asarray(list(users) if not isinstance(users, np.ndarray) else users)
    if users.size == 0 or not np.issubdtype(users.dtype, np.integer):
        raise ValueError(f"users must be a non-empty list of int user ids, got {users!r}.")
    bad = users[(users < 0) | (users >= n_users)]
    if bad.size:
        raise ValueError(f"unknown user ids {bad.tolist()}: this run has users 0..{n_users - 1} "
                         f"(U={n_users}; the model's 0-based ids).")
    masked = [run.data.train] + ([run.data.val] if exclude_val else [])
    masked = np.concatenate(masked)
    n_masked = np.bincount(masked[:, 0], minlength=n_users)[users]
    room = int(n_items - n_masked.max())
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= room:
        raise ValueError(
            f"k must be an int in [1, {room}]: I={n_items} items minus the {int(n_masked.max())}"
            f" train{'/val' if exclude_val else ''} items of one of these users; got {k!r}.")
    scores = run.user_emb[users] @ run.item_emb.T  # [N, I]
    row = {int(u): n for n, u in enumerate(users)}
    for u, i in masked:
        if int(u) in row:
            scores[row[int(u)], i] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    return Recommendations(
        users, order, top.astype(np.float32),
        None if run.user_labels is None else [run.user_labels[u] for u in users],
        None if run.item_labels is None else [[run.item_labels[i] for i in r] for r in order])


def format_recommendations(recs):
    """Recommendations as text: one block per user, rank / item id / score / dataset label."""
    lines = []
    for n, user in enumerate(recs.users):
        who = f"user {int(user)}" + ("" if recs.user_labels is None
                                     else f" (dataset id {recs.user_labels[n]})")
        lines.append(who)
        for r, (item, score) in enumerate(zip(recs.items[n], recs.scores[n]), 1):
            label = "" if recs.item_labels is None else f"  {recs.item_labels[n][r - 1]}"
            lines.append(f"  {r:>3}. item {int(item):>5}  score {float(score):8.4f}{label}")
    return "\n".join(lines)


def export_embeddings(run, path):
    """Writes user_emb [U, H] and item_emb [I, H] (float32), plus the labels when known, to an
    .npz file; returns the path."""
    extra = {}
    if run.user_labels is not None:
        extra["user_labels"] = np.asarray(run.user_labels)
        extra["item_labels"] = np.asarray(run.item_labels)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, user_emb=run.user_emb, item_emb=run.item_emb, **extra)
    return path
