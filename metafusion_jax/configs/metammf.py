"""MetaMMF training configs: `get_config("<variant>[,key=value...]")`.

Launch (README command 1, the embedded real dataset):

    python experiments/train_metammf.py --config=configs/metammf.py:ml100k \
        --workdir=/tmp/mm_ml100k

Variants:
  ml100k      (default) MetaMMF-GCN, dense meta layers, on MovieLens-100k (title/genre/kg features,
              no PCA). A few minutes on 2 CPU cores.
  synthetic   the planted micro-video generator at moderate size (driver modality per item).
  mmgcn       MMGCN-format files in config.data.dir at the reference's runnable "v0530" dims:
              per-modality PCA 64/64/32, meta MLP 160->160->5, dense meta layers 160->80->32.
  mmgcn_head  MMGCN files with the reference's HEAD dims: raw 2276-dim features, meta MLP
              2276->2276->5, four cp layers 2276->1024->512->256->32, rank 16, S=5.
  mmrec       MMRec-format files (`<name>.inter`, image/text_feat.npy) in config.data.dir.
  smoke       tiny synthetic run for tests (seconds).

Baselines and ablations are chosen by fields, e.g.
  --config.model.name=lightgcn     (one of metammf.models.MODELS)
  --config.model.fusion=static     (dense | cp | cp_repo | static)
or as suffixes of the argument: `configs/metammf.py:ml100k,model=vbpr,fusion=cp,backbone=mf,seed=1`.

Model fields. `config.model.name` picks the model. The MetaMMF family (metammf, static_mlp) reads
its sizes from `config.model.*` (fusion, backbone, meta_hidden, s_dim, fusion_dims, rank, id_dim,
user_dim, gcn_dropout; static_mlp fixes fusion="static"). Every baseline reads its own
sub-ConfigDict whose keys are exactly its factory's keyword arguments:
  config.model.vbpr      id_dim, content_dim
  config.model.lightgcn  dim, n_layers
  config.model.mmgcn     dim, n_layers, mlp_dim, concat              (metammf/mmgcn_model.py)
  config.model.lattice   dim, feat_embed_dim, n_layers, n_item_layers, knn_k, lambda_coeff
  config.model.freedom   dim, n_layers, n_mm_layers, knn_k, dropout, modality_weights
  config.model.random    dim, seed          (popularity has no options, so no group)
e.g. `--config.model.lightgcn.n_layers=2`. A field no model knows is a ValueError naming it.

Data fields for the MMGCN layout: `config.data.feature_files` = ((modality, file name), ...);
() reads whichever MovieLens feature files exist (Kwai-style folders have no acoustic file).
With `config.data.pca_skip_absent` (on in the mmgcn variants) `pca_dims` entries of modalities
the data lacks are dropped with a log line instead of raising.

Feature scale. The models are initialised for item features of scale ~1. A modality whose
largest |value| exceeds 1e3 (`metammf.features.MAX_FEATURE_SCALE`; e.g. features scaled by 1e4)
trains to absurd losses and near-random metrics, so the trainer warns, naming the modality and
its scale (and again if an epoch loss exceeds 100). `config.data.standardize=True` (default
False, which keeps the features, and so the results, exactly as given) standardises every
feature column to mean 0 and standard deviation 1 over items before the optional PCA.

Field values are checked before anything is trained or written (`metammf.inputs.validate_config`):
e.g. `model.gcn_dropout` must be two rates in [0, 1) and `eval_chunk` an int >= 1.
"""
import ml_collections

VARIANTS = ("ml100k", "synthetic", "mmgcn", "mmgcn_head", "mmrec", "smoke")
# Suffix keys of the argument string -> (config path, type).
SUFFIXES = {
    "model": (("model", "name"), str),
    "fusion": (("model", "fusion"), str),
    "backbone": (("model", "backbone"), str),
    "seed": (("seed",), int),
    "epochs": (("num_epochs",), int),
}


def _base():
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.source = "ml100k"      # key of metammf.train.LOADERS
    config.data.dir = ""               # ml100k: "" = the copy in the recbole wheel
    config.data.name = ""
    config.data.seed = 0               # split / generator seed
    config.data.pca_dims = ()          # ((modality, PCA components), ...); () keeps raw features
    config.data.n_users = 0            # synthetic only
    config.data.n_items = 0
    config.data.n_interactions = 0
    config.data.modality_dims = ()     # synthetic only: ((name, width), ...); () = the default
    config.data.feature_files = ()     # mmgcn only: ((modality, file), ...); () = MovieLens names
    config.data.pca_skip_absent = False  # drop (and log) pca_dims of modalities the data lacks
    config.data.standardize = False    # standardise every feature column over items (module doc)
    # Cold-start protocol: this fraction of items is held out with all its interactions (never
    # a negative in training) and ranked from content alone (results["cold"]); 0.0 = off.
    config.data.cold_items = 0.0

    config.model = ml_collections.ConfigDict()
    config.model.name = "metammf"      # key of metammf.models.MODELS
    config.model.fusion = "dense"      # dense | cp | cp_repo | static
    config.model.backbone = "gcn"      # mf | gcn
    config.model.meta_hidden = 0       # 0: the feature width F (as the reference)
    config.model.s_dim = 5
    config.model.fusion_dims = (80, 32)
    config.model.rank = 16
    config.model.id_dim = 32
    config.model.user_dim = 64
    config.model.gcn_dropout = (0.5, 0.2)
    # Baselines: one sub-config each, keys = the factory's keyword arguments (its defaults).
    config.model.vbpr = ml_collections.ConfigDict({"id_dim": 32, "content_dim": 32})
    config.model.lightgcn = ml_collections.ConfigDict({"dim": 64, "n_layers": 3})
    config.model.mmgcn = ml_collections.ConfigDict(
        {"dim": 64, "n_layers": 3, "mlp_dim": 256, "concat": True})
    config.model.lattice = ml_collections.ConfigDict(
        {"dim": 64, "feat_embed_dim": 64, "n_layers": 2, "n_item_layers": 1, "knn_k": 10,
         "lambda_coeff": 0.9})
    config.model.freedom = ml_collections.ConfigDict(
        {"dim": 64, "n_layers": 2, "n_mm_layers": 1, "knn_k": 10, "dropout": 0.8,
         "modality_weights": ()})
    # Floors: popularity has no options; random's seed (the table sets it to config.seed).
    config.model.random = ml_collections.ConfigDict({"dim": 64, "seed": 0})

    config.num_epochs = 60
    config.eval_every = 5
    config.patience = 5                # evaluations without val recall@20 improvement
    config.batch_size = 3000
    config.num_negatives = 1
    config.negatives = "resample"      # resample per epoch | static (the reference's triples)
    config.learning_rate = 1e-3
    config.weight_decay = 1e-6         # coupled L2, as torch Adam(weight_decay=...)
    config.eval_chunk = 4096
    # Device mesh (training/mesh.py, metammf/placement.py): batch, items and graph rows split
    # over "data"; -1 = all remaining devices (1 CPU, 8 fake CPU devices, a TPU runtime, GPUs).
    config.mesh = (("data", -1),)
    config.max_epochs_this_run = 0     # > 0: stop after that many epochs (resume later)
    config.progress = True
    # Draw training curves and the modality attribution into <workdir>/figures/ (PNG).
    config.figures = True
    return config


def _ml100k(config):
    # The step recomputes the whole graph whatever the batch size (spec 8.4): big batches, a
    # larger learning rate. Val R@20 plateaus around epoch 60-90 (0.31-0.32).
    config.num_epochs = 60
    config.eval_every = 5
    config.patience = 3
    config.batch_size = 8192
    config.learning_rate = 5e-3
    return config


def _synthetic(config):
    config.data.source = "synthetic"
    config.data.n_users = 2000
    config.data.n_items = 1000
    config.data.n_interactions = 40000
    config.num_epochs = 40
    config.eval_every = 5
    config.patience = 3
    config.batch_size = 2048
    return config


def _mmgcn(config):
    config.data.source = "mmgcn"
    config.data.dir = "/path/to/mmgcn/movielens"
    config.data.name = "movielens"
    config.data.pca_dims = (("visual", 64), ("acoustic", 64), ("textual", 32))
    config.data.pca_skip_absent = True  # e.g. Kwai: no acoustic file
    config.model.fusion_dims = (80, 32)
    config.eval_chunk = 4096
    return config


def _mmgcn_head(config):
    config = _mmgcn(config)
    config.data.pca_dims = ()
    config.model.fusion = "cp"
    config.model.fusion_dims = (1024, 512, 256, 32)
    config.model.rank = 16
    config.model.s_dim = 5
    return config


def _mmrec(config):
    config.data.source = "mmrec"
    config.data.dir = "/path/to/mmrec/baby"
    config.data.name = "baby"
    config.eval_chunk = 1024
    return config


def _smoke(config):
    config.data.source = "synthetic"
    config.data.n_users = 60
    config.data.n_items = 40
    config.data.n_interactions = 600
    # The order the earlier dict-valued field had (ConfigDict sorts dict keys): the smoke data and
    # results stay those of earlier runs.
    config.data.modality_dims = (("acoustic", 4), ("textual", 4), ("visual", 8))
    config.model.meta_hidden = 8
    config.model.fusion_dims = (8, 4)
    config.model.id_dim = 4
    config.model.user_dim = 8
    config.model.vbpr.id_dim = 4
    config.num_epochs = 4
    config.eval_every = 1
    config.patience = 10
    config.batch_size = 128
    config.eval_chunk = 64
    config.progress = False
    config.figures = False             # tests stay fast; --config.figures=True to draw
    return config


_VARIANT_FNS = {
    "ml100k": _ml100k, "synthetic": _synthetic, "mmgcn": _mmgcn, "mmgcn_head": _mmgcn_head,
    "mmrec": _mmrec, "smoke": _smoke,
}


def get_config(arg=None):
    """Returns the ConfigDict of a variant, with optional `key=value` suffixes (see module doc)."""
    parts = [p.strip() for p in (arg or "ml100k").split(",") if p.strip()]
    variant, overrides = parts[0], parts[1:]
    if variant not in _VARIANT_FNS:
        raise ValueError(
            f"config variant must be one of {VARIANTS}, got {variant!r}. Use e.g. "
            "--config=configs/metammf.py:ml100k")
    config = _VARIANT_FNS[variant](_base())
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in SUFFIXES:
            raise ValueError(
                f"config suffix must be key=value with key in {sorted(SUFFIXES)}, got {item!r}. "
                "Other fields: use --config.<field>=<value>.")
        path, kind = SUFFIXES[key]
        node = config
        for name in path[:-1]:
            node = node[name]
        try:
            node[path[-1]] = kind(value)
        except ValueError as err:
            raise ValueError(f"config suffix {key} needs a {kind.__name__}, got {value!r}.") \
                from err
    return config
