"""Every list-valued config field can be overridden from the binaries' command line.

The binaries take `--config=configs/<method>.py:<variant>` (absl `config_flags`); list fields are
tuples, which `config_flags` parses from a Python literal: `--config.rho_list="(0, 0.5, 2)"`.
Nested fields are tuples of tuples (`--config.cohort.mod_outs="((0, 8), (0, 4, 400))"`) and
name -> value maps are tuples of pairs (`--config.data.pca_dims="(('visual', 32),)"`).
"""
import os

from absl import flags
from ml_collections import config_flags
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def parse(config_arg, *overrides):
    """The ConfigDict the binary would get from `--config=<config_arg> <overrides>`."""
    argv = ["binary", f"--config={os.path.join(ROOT, config_arg)}", *overrides]
    values = flags.FlagValues()
    # sys_argv: which override flags to define (the binaries read sys.argv itself).
    config_flags.DEFINE_config_file("config", None, "config", flag_values=values, sys_argv=argv)
    values(argv)
    return values.config


def field(config, path):
    node = config
    for name in path.split("."):
        node = node[name]
    return node


# (config file:variant, field, command-line literal, expected value after parsing)
CASES = [
    ("configs/metafusion.py:smoke", "rho_list", "(0.0, 0.5, 2.0)", (0.0, 0.5, 2.0)),
    ("configs/metafusion.py:smoke", "cohort.mod_outs", "((0, 4, 500), (0, 8, 400))",
     ((0, 4, 500), (0, 8, 400))),
    ("configs/metafusion.py:smoke", "cohort.head_hiddens", "(16, 8)", (16, 8)),
    ("configs/metafusion.py:setting_1_1", "cohort.mod_hiddens", "((64,), (32, 16))",
     ((64,), (32, 16))),
    ("configs/metafusion.py:mfeat", "data.views", "('fou', 'pix')", ("fou", "pix")),
    ("configs/metafusion.py:setting_2_2", "data.noise_ratios", "(0.1, 0.2)", (0.1, 0.2)),
    ("configs/metafusion.py:default", "cohort.latent_fractions", "(0.1, 0.3, 0.6)",
     (0.1, 0.3, 0.6)),
    ("configs/metafusion.py:default", "cohort.mod_outs", "((0, 4, 8), (0, 2))",  # () by default
     ((0, 4, 8), (0, 2))),
    ("configs/metammf.py:mmgcn", "data.feature_files", "(('visual', 'image_feat.npy'),)",
     (("visual", "image_feat.npy"),)),
    ("configs/metammf.py:mmgcn", "data.pca_dims", "(('visual', 32), ('textual', 16))",
     (("visual", 32), ("textual", 16))),
    ("configs/metammf.py:smoke", "data.modality_dims", "(('visual', 6), ('textual', 3))",
     (("visual", 6), ("textual", 3))),
    ("configs/metammf.py:ml100k", "model.fusion_dims", "(64, 16)", (64, 16)),
    ("configs/metammf.py:ml100k", "model.gcn_dropout", "(0.1, 0.0)", (0.1, 0.0)),
]


@pytest.mark.parametrize("config_arg,path,literal,expected", CASES,
                         ids=[f"{c.split('/')[1]}-{p}" for c, p, _, _ in CASES])
def test_list_field_override(config_arg, path, literal, expected):
    default = field(parse(config_arg), path)
    assert isinstance(default, tuple), f"{path} must be a tuple to be overridable"
    assert default != expected  # the override must change something
    assert field(parse(config_arg, f"--config.{path}={literal}"), path) == expected


def test_overridden_config_validates_and_builds():
    """An overridden Meta Fusion cohort is what the trainer builds (members from mod_outs)."""
    from metafusion_jax.metafusion import cohort as cohort_lib
    config = parse("configs/metafusion.py:smoke", "--config.cohort.mod_outs=((0, 4, 500), (0, 400))")
    spec = cohort_lib.make_cohort_spec([list(m) for m in config.cohort.mod_outs], (500, 400))
    assert spec.num_members == 3 * 2 - 1


def test_bad_literal_is_a_clear_error():
    with pytest.raises(flags.IllegalFlagValueError, match="rho_list"):
        parse("configs/metafusion.py:smoke", "--config.rho_list=(0.0, 1.0")
