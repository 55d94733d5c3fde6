r"""SimCLR or MoCo v3 pre-training on slices of the Medaka-like volumes: the baselines of the paper's Table 1.

Paper setting (GPU/TPU): ResNet-18, two augmented views of each slice, a projection MLP (and for
MoCo v3 a predictor and a momentum encoder).
  python -m ssl_ct.main --config=configs/contrastive_medaka.py:method=simclr --workdir=/tmp/simclr
  python -m ssl_ct.main --config=configs/contrastive_medaka.py:method=moco --workdir=/tmp/moco

2-core CPU demo on the embedded synthetic set:
  python -m ssl_ct.main --config=configs/contrastive_medaka.py:method=simclr,demo --workdir=/tmp/simclr_demo

The workdir then initialises a segmentation model: `configs/segment_medaka.py --config.init=W`.
Args (after the colon): method=simclr|moco, variant=r18|r34|r50|r101|r152, demo, tiny.
"""

import ml_collections

from ssl_ct.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, method="simclr", variant="r18", demo=False, tiny=False)
  if arg.method not in ("simclr", "moco"):
    raise ValueError(f"unknown method {arg.method!r}; valid methods: simclr, moco")
  config = ml_collections.ConfigDict()
  config.task = "contrastive"
  config.seed = 0  # seeds data order, augmentations and init

  config.data = ml_collections.ConfigDict()
  common.input_fields(config.data)
  common.medaka_synthetic(config.data)
  config.data.downscale_to = 768  # longest side (voxels) the volumes are read at; 0 = as stored
  config.data.low_percentile = 0.5  # %, intensity mapped to 0
  config.data.high_percentile = 99.5  # %, intensity mapped to 1
  config.data.slice_size = 256  # px, side of the model input
  config.data.augment_strength = 1.0  # ssl_ct/data/augment.py; the paper: strong augmentation hurts SimCLR on CT
  config.data.batch_size = 64  # pairs of views per step, over all devices (2 x as many images)
  config.data.num_workers = 4  # grain worker processes; 0 = in the main process

  config.model = ml_collections.ConfigDict()
  config.model.name = {"r18": "resnet18", "r34": "resnet34", "r50": "resnet50", "r101": "resnet101", "r152": "resnet152"}[
    arg.variant
  ]
  config.model.width = 64  # channels of the first stage
  config.model.small_stem = False  # True: 3x3 stride-2 stem without max-pool, for small slices
  config.model.output_stride = 32  # input pixels per feature-map cell
  config.model.dtype = "float32"  # compute dtype; "bfloat16" on a GPU/TPU (parameters stay float32)
  config.model.projection_hidden = 512  # units of the projection MLP
  config.model.projection_dim = 128  # the contrastive embedding
  config.model.predictor_hidden = 512 if arg.method == "moco" else 0  # MoCo v3's predictor; 0 = none (SimCLR)

  config.loss = ml_collections.ConfigDict()
  config.loss.name = "moco_v3" if arg.method == "moco" else "nt_xent"
  config.loss.kw = ml_collections.ConfigDict({"temperature": 0.2 if arg.method == "moco" else 0.1})

  config.opt = ml_collections.ConfigDict()
  config.opt.name = "adamw"
  config.opt.lr = 1e-3  # peak learning rate
  config.opt.weight_decay = 1e-4
  config.opt.warmup_steps = 500
  config.opt.grad_clip = 1.0  # global norm; 0 disables
  config.opt.ema_momentum = 0.99 if arg.method == "moco" else 0.0  # MoCo v3's momentum encoder

  config.train = ml_collections.ConfigDict()
  config.train.steps = 20_000
  config.train.log_every = 50  # steps
  config.train.checkpoint_every = 1000  # steps
  config.train.eval_every = 1000  # steps (no validation set: the segmentation study is the test)

  if arg.demo or arg.tiny:
    config.data.synthetic.num_volumes = 48
    config.data.synthetic.shape = (192, 64, 64)
    config.data.downscale_to = 0
    config.data.slice_size = 64
    config.data.batch_size = 32
    config.data.num_workers = 0
    config.model.width = 16
    config.model.small_stem = True
    config.model.projection_hidden = 128
    config.model.projection_dim = 64
    config.model.predictor_hidden = 128 if arg.method == "moco" else 0
    config.opt.warmup_steps = 100
    config.train.steps = 1000
    config.train.log_every = 25
    config.train.checkpoint_every = 500
    config.train.eval_every = 500
  if arg.tiny:
    config.data.synthetic.num_volumes = 3
    config.data.synthetic.shape = (40, 24, 24)
    config.data.slice_size = 24
    config.data.batch_size = 4
    config.model.name = "resnet_tiny"
    config.model.width = 4
    config.model.projection_hidden = 8
    config.model.projection_dim = 8
    config.model.predictor_hidden = 8 if arg.method == "moco" else 0
    config.opt.warmup_steps = 1
    config.train.steps = 2
    config.train.log_every = 1
    config.train.checkpoint_every = 1
  return config
