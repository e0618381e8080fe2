"""Tests of training/run_info.py: the run record every results.json carries."""
import json
import os
import subprocess

import jax

import metafusion_jax
from metafusion_jax.training import run_info


def test_run_info_values_are_this_process():
    info = run_info.run_info()
    assert info["package_version"] == metafusion_jax.__version__
    assert info["jax_version"] == jax.__version__
    assert info["backend"] == "cpu"
    assert info["device_count"] == 8  # conftest's fake CPU devices
    assert info["local_device_count"] == 8
    assert info["process_count"] == 1
    json.dumps(info)  # plain JSON values only


def test_git_commit_in_a_checkout_and_outside(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, env=env,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (repo / "a.txt").write_text("one")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    assert run_info.git_commit(str(repo / "a.txt")) == head
    (repo / "a.txt").write_text("two")  # a tracked file changed: dirty
    assert run_info.git_commit(str(repo / "a.txt")) == head + "+dirty"
    outside = tmp_path / "plain"
    outside.mkdir()
    (outside / "b.txt").write_text("x")
    assert run_info.git_commit(str(outside / "b.txt")) is None
