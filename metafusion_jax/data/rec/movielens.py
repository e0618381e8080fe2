"""Real MovieLens-100k, offline, from the atomic files the `recbole` wheel ships.

All 100,000 ratings become implicit feedback. Three item modalities are built from real content
(numpy / scipy / sklearn only, a few seconds):
    title       word (1-2 gram) + char (2-4 gram) TF-IDF of the title -> truncated SVD, 64 dims
    genre_year  19-genre multi-hot + release year (z-scored) + year-missing indicator, 21 dims
    kg          bag of (relation, neighbour) and relation counts of the item's Freebase entity
                in ml-100k.kg -> TF-IDF -> truncated SVD, 64 dims, plus a no-link indicator
Every column is standardised (zero mean, unit variance; constant columns stay zero).
"""
import importlib.util
import os

import numpy as np
import scipy.sparse as sp

from metafusion_jax.data.rec import interactions

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")
SVD_DIMS = 64
FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.kg", "ml-100k.link")


def recbole_ml100k_dir():
    """Returns the ml-100k folder inside the installed `recbole` wheel, or None (no import)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "dataset_example", "ml-100k")


def _read_table(path):
    """Reads a RecBole atomic file: header `name:type` cells, tab-separated rows of strings."""
    with open(path, encoding="utf-8", errors="replace") as f:
        header = [h.split(":")[0] for h in f.readline().rstrip("\n\r").split("\t")]
        rows = [line.rstrip("\n\r").split("\t") for line in f if line.strip()]
    for n, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {n + 2} has {len(row)} tab-separated cells, the "
                             f"header {header} has {len(header)}.")
    return header, rows


def _column(path, header, rows, name):
    if name not in header:
        raise ValueError(f"{path}: header {header} lacks column {name!r}.")
    k = header.index(name)
    return [r[k] for r in rows]


def _standardise(x):
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    return x.astype(np.float32)


def _svd(matrix, dims, seed):
    """TruncatedSVD to exactly `dims` columns (zero-padded when the matrix rank is smaller)."""
    from sklearn.decomposition import TruncatedSVD  # lazy: keeps `import metafusion_jax` fast
    k = min(dims, min(matrix.shape) - 1)
    out = np.zeros((matrix.shape[0], dims))
    if k >= 1:
        out[:, :k] = TruncatedSVD(n_components=k, random_state=seed).fit_transform(matrix)
    return out


def _title_features(titles, seed):
    from sklearn.feature_extraction.text import TfidfVectorizer  # lazy import

    words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
                            sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    matrix = sp.hstack([words.fit_transform(titles), chars.fit_transform(titles)]).tocsr()
    return _standardise(_svd(matrix, SVD_DIMS, seed))


def _genre_year_features(path, classes, years):
    multi_hot = np.zeros((len(classes), len(GENRES)))
    for i, cell in enumerate(classes):
        for genre in cell.split():
            if genre not in GENRES:
                raise ValueError(f"{path}: item row {i + 1} has unknown genre {genre!r}; "
                                 f"expected one of {GENRES}.")
            multi_hot[i, GENRES.index(genre)] = 1.0
    year = np.array([float(y) if y.strip().isdigit() else np.nan for y in years])
    missing = np.isnan(year)
    year = np.where(missing, np.nanmean(year) if (~missing).any() else 0.0, year)
    return _standardise(np.concatenate([multi_hot, year[:, None], missing[:, None]], axis=1))


def _kg_features(directory, item_tokens, seed):
    link_path, kg_path = (os.path.join(directory, f) for f in FILES[3:1:-1])
    header, rows = _read_table(link_path)
    entity_of = dict(zip(_column(link_path, header, rows, "item_id"),
                         _column(link_path, header, rows, "entity_id")))
    header, rows = _read_table(kg_path)
    heads, rels, tails = (_column(kg_path, header, rows, c)
                          for c in ("head_id", "relation_id", "tail_id"))
    bags = {}
    for h, r, t in zip(heads, rels, tails):
        bags.setdefault(h, []).extend((f"{r}>{t}", f"rel:{r}"))
        bags.setdefault(t, []).extend((f"{r}<{h}", f"rel:{r}~"))
    docs = [bags.get(entity_of.get(tok, ""), []) for tok in item_tokens]
    no_link = np.array([not d for d in docs], dtype=np.float64)
    svd = np.zeros((len(docs), SVD_DIMS))
    if (no_link == 0).any():
        from sklearn.feature_extraction.text import TfidfVectorizer  # lazy import

        vectorizer = TfidfVectorizer(analyzer=lambda doc: doc, sublinear_tf=True)
        svd = _svd(vectorizer.fit_transform(docs), SVD_DIMS, seed)
    svd = _standardise(svd) * (1.0 - no_link[:, None])  # items without a link: zeros
    return np.concatenate([svd, _standardise(no_link[:, None])], axis=1).astype(np.float32)


def load_ml100k(directory=None, seed=0):
    """Loads real MovieLens-100k as implicit feedback with title, genre_year and kg modalities.

    Users and items are remapped to 0-based ids in numeric order of their original ids (items
    from ml-100k.item, users from ml-100k.inter); every rating counts as one interaction; the split
    is `per_user_split(seed=seed)` (80/10/10 per user).

    Args:
        directory: folder with ml-100k.{inter,item,kg,link}; default the copy in the `recbole`
            wheel (`pip install --no-deps recbole==1.2.1`; recbole is never imported).
        seed: split seed (the SVDs use a fixed seed 0).

    Returns:
        Validated `InteractionData` named "ml-100k" (943 users, 1,682 items on the real files).

    Raises:
        ValueError: if the files are missing or malformed.
    """
    directory = directory or recbole_ml100k_dir()
    for filename in FILES:
        if directory is None or not os.path.isfile(os.path.join(directory, filename)):
            raise ValueError(
                f"MovieLens-100k file {filename} not found in {directory!r}. Install the files "
                "with `pip install --no-deps recbole==1.2.1` or pass directory= a folder with "
                f"{', '.join(FILES)}.")
    item_path, inter_path = (os.path.join(directory, f) for f in FILES[1::-1])
    header, rows = _read_table(item_path)
    item_tokens = _column(item_path, header, rows, "item_id")
    order = sorted(range(len(item_tokens)), key=lambda k: int(item_tokens[k]))
    rows = [rows[k] for k in order]
    item_tokens = [item_tokens[k] for k in order]
    item_index = {tok: k for k, tok in enumerate(item_tokens)}
    titles = _column(item_path, header, rows, "movie_title")
    genre_year = _genre_year_features(item_path, _column(item_path, header, rows, "class"),
                                      _column(item_path, header, rows, "release_year"))
    features = {"title": _title_features(titles, seed=0), "genre_year": genre_year,
                "kg": _kg_features(directory, item_tokens, seed=0)}
    header, rows = _read_table(inter_path)
    users = np.array(_column(inter_path, header, rows, "user_id"), dtype=np.int64)
    items = _column(inter_path, header, rows, "item_id")
    unknown = sorted(set(items) - item_index.keys())
    if unknown:
        raise ValueError(f"{inter_path}: {len(unknown)} item ids are not in {item_path} "
                         f"(e.g. {unknown[:3]}). The two files must come from the same dataset.")
    item_ids = np.array([item_index[t] for t in items], dtype=np.int64)
    user_values, user_ids = np.unique(users, return_inverse=True)
    pairs = np.stack([user_ids, item_ids], axis=1)
    train, val, test = interactions.per_user_split(pairs, len(user_values), seed)
    data = interactions.InteractionData(
        name="ml-100k", n_users=len(user_values), n_items=len(item_tokens), train=train,
        val=val, test=test, features=features)
    return interactions.validate_interactions(data, source=directory)
