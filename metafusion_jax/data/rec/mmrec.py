"""Reader and writer for the MMRec layout (Amazon Baby / Sports / Clothing, MicroLens).

Layout:
    <name>.inter     tab-separated with a header; columns userID, itemID, x_label (0 train,
                     1 valid, 2 test) and optionally timestamp, in any order
    image_feat.npy   float [I, D] rows in item-id order
    text_feat.npy    float [I, D]
    <other>_feat.npy any further modality, named <other>
"""
import glob
import os

import numpy as np

from metafusion_jax.data.rec import interactions

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
FIRST_MODALITIES = ("image", "text")


def _read_inter(path):
    if not os.path.isfile(path):
        raise ValueError(f"{path}: missing interactions file. The MMRec layout needs "
                         "<name>.inter (tab-separated userID, itemID, x_label).")
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n\r").split("\t")
    names = [h.split(":")[0].strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: header {header} lacks columns {missing}. Expected a "
                         "tab-separated header with userID, itemID, x_label.")
    cols = [names.index(c) for c in REQUIRED_COLUMNS]
    try:
        table = np.loadtxt(path, delimiter="\t", skiprows=1, usecols=cols, dtype=np.float64,
                           ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: could not parse userID/itemID/x_label as numbers ({e}).") from e
    if table.size and (np.round(table) != table).any():
        raise ValueError(f"{path}: userID, itemID and x_label must be integers.")
    return table.astype(np.int64)


def _feature_files(directory):
    found = {os.path.basename(p)[:-len("_feat.npy")]: p
             for p in glob.glob(os.path.join(directory, "*_feat.npy"))}
    if not found:
        raise ValueError(f"{directory}: no feature file found. The MMRec layout needs "
                         "image_feat.npy and/or text_feat.npy (float [n_items, dim]).")
    order = [m for m in FIRST_MODALITIES if m in found]
    order += sorted(m for m in found if m not in FIRST_MODALITIES)
    return {m: found[m] for m in order}


def load_mmrec(directory, name):
    """Loads `<directory>/<name>.inter` and its `*_feat.npy` files.

    U = 1 + the largest userID; I = rows of the feature files (all must agree).

    Args:
        directory: folder with the files listed in the module docstring.
        name: dataset name, the stem of the `.inter` file (e.g. "baby").

    Returns:
        Validated `InteractionData`; modalities image, text, then other `*_feat.npy` sorted.

    Raises:
        ValueError: missing files, a bad header, x_label outside {0, 1, 2}, or any problem
            `validate_interactions` finds.
    """
    path = os.path.join(directory, f"{name}.inter")
    table = _read_inter(path)
    labels = set(np.unique(table[:, 2]).tolist())
    if not labels <= {0, 1, 2}:
        raise ValueError(f"{path}: x_label must be 0 (train), 1 (valid) or 2 (test), got "
                         f"values {sorted(labels - {0, 1, 2})}.")
    features = {}
    for modality, fpath in _feature_files(directory).items():
        try:
            features[modality] = np.load(fpath)
        except Exception as e:  # numpy raises several types for corrupt or pickled files
            raise ValueError(f"{fpath}: could not be read as a .npy array ({e}).") from e
    rows = {m: x.shape[0] if x.ndim else 0 for m, x in features.items()}
    if len(set(rows.values())) != 1:
        raise ValueError(f"{directory}: feature files disagree on the number of items (rows): "
                         f"{rows}. Every *_feat.npy needs one row per item.")
    n_users = int(table[:, 0].max()) + 1 if len(table) else 1
    splits = {s: table[table[:, 2] == k, :2] for k, s in enumerate(interactions.SPLITS)}
    data = interactions.InteractionData(name=name, n_users=n_users,
                                        n_items=int(next(iter(rows.values()))),
                                        features=features, **splits)
    return interactions.validate_interactions(data, source=path)


def write_mmrec(directory, data, timestamps=True):
    """Writes `InteractionData` in the MMRec layout (inverse of `load_mmrec`).

    Args:
        directory: output folder (created if needed).
        data: `InteractionData`; modality m is written to `<m>_feat.npy`.
        timestamps: also write a timestamp column (row index), as the distributed files have.

    Returns:
        Path of the `.inter` file.
    """
    os.makedirs(directory, exist_ok=True)
    parts = [np.concatenate([np.asarray(getattr(data, s), np.int64),
                             np.full((len(getattr(data, s)), 1), k)], axis=1)
             for k, s in enumerate(interactions.SPLITS)]
    table = np.concatenate(parts)
    header = ["userID", "itemID", "x_label"]
    if timestamps:
        table = np.concatenate([table[:, :2], np.arange(len(table))[:, None], table[:, 2:]], 1)
        header.insert(2, "timestamp")
    path = os.path.join(directory, f"{data.name}.inter")
    np.savetxt(path, table, fmt="%d", delimiter="\t", header="\t".join(header), comments="")
    for modality, x in data.features.items():
        np.save(os.path.join(directory, f"{modality}_feat.npy"), x)
    return path
