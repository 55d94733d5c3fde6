r"""Segmentation of the Medaka visual system with a pre-trained encoder (paper 3.2, Table 1).

Paper setting (GPU/TPU): DeepLabV3+ over ResNet-18, 15 annotated volumes (fine-tune on 10, test
on 5, never seen in fine-tuning), 1% or 100% of the fine-tuning slices labelled, the encoder
from a pre-training workdir (`init`) or random.
  python -m ssl_ct.main --config=configs/segment_medaka.py --workdir=/tmp/seg --config.init=W_PRETRAIN

2-core CPU demo on the embedded synthetic medaka set (its `visual_system` label maps):
  python -m ssl_ct.main --config=configs/segment_medaka.py:demo --workdir=/tmp/seg_demo [--config.init=W_PRETRAIN]

Fine-tuned from boxes of the structure only (one per region on each labelled slice; the box
tightness prior, the paper's stated next step), `boxes` after the colon:
  python -m ssl_ct.main --config=configs/segment_medaka.py:demo,boxes --workdir=/tmp/seg_boxes

Args (after the colon): decoder=deeplabv3plus|unet, variant=r18|r34|r50|r101|r152, demo, tiny, boxes.
"""

import ml_collections

from ssl_ct.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, decoder="deeplabv3plus", variant="r18", demo=False, tiny=False, boxes=False)
  config = ml_collections.ConfigDict()
  config.task = "segmentation"
  config.seed = 0  # seeds the initialisation of what is not pre-trained and the data order
  config.init = ""  # a pre-training workdir whose encoder initialises the model; "" = random

  config.data = ml_collections.ConfigDict()
  common.input_fields(config.data)
  common.medaka_synthetic(config.data)
  config.data.downscale_to = 768  # longest side (voxels) the volumes are read at; 0 = as stored
  config.data.low_percentile = 0.5  # %, intensity mapped to 0
  config.data.high_percentile = 99.5  # %, intensity mapped to 1
  config.data.slice_size = 256  # px, side of the model input
  config.data.segment_axis = 0  # slices along this axis are segmented (and stitched back)
  config.data.num_classes = 2  # label values 0 .. num_classes - 1 (medaka: 1 = visual system)
  config.data.split_seed = 0  # seeds which volumes are annotated / fine-tune / test, and which slices carry labels
  config.data.num_annotated = 15  # volumes with labels the study uses (paper: 15); 0 = every labelled one
  config.data.test_fraction = 1 / 3  # of the annotated volumes: the test set (paper: 5 of 15)
  config.data.label_fraction = 1.0  # of the fine-tuning slices, labelled (paper: 0.01 and 1.0)
  config.data.foreground_fraction = 1 / 3  # slices showing the structure repeated to this share of the draws (nnU-Net's)
  config.data.label_kind = "box" if arg.boxes else "mask"  # fine-tune on label maps, or only on their regions' boxes
  config.data.max_boxes = 4  # boxes per slice with label_kind "box" (past it the smallest regions share one)
  config.data.rotate = True  # random rotation of each slice and its labels about the slice axis
  config.data.batch_size = 16  # slices per step, over all devices
  config.data.num_workers = 4  # grain worker processes; 0 = in the main process

  config.model = ml_collections.ConfigDict()
  config.model.decoder = arg.decoder  # deeplabv3plus | unet
  config.model.name = {"r18": "resnet18", "r34": "resnet34", "r50": "resnet50", "r101": "resnet101", "r152": "resnet152"}[
    arg.variant
  ]
  config.model.width = 64  # channels of the first stage (as the pre-trained encoder's)
  config.model.small_stem = False  # as the pre-trained encoder's
  config.model.output_stride = 16 if arg.decoder == "deeplabv3plus" else 32  # DeepLab dilates past 16
  config.model.dtype = "float32"  # compute dtype; "bfloat16" on a GPU/TPU (parameters stay float32)
  config.model.aspp_rates = (6, 12, 18)  # atrous rates at output stride 16 (the DeepLabV3+ paper's)
  config.model.decoder_channels = 256  # DeepLabV3+'s ASPP and decoder (the paper's 256, 4x the encoder's width)

  config.loss = ml_collections.ConfigDict()
  if arg.boxes:
    config.loss.name = "box_tightness"
    config.loss.kw = ml_collections.ConfigDict({"alpha": 4.0, "negative_weight": 1.0})
  else:
    config.loss.name = "cross_entropy_dice"
    config.loss.kw = ml_collections.ConfigDict({"dice_weight": 1.0})

  config.opt = ml_collections.ConfigDict()
  config.opt.name = "adamw"
  config.opt.lr = 1e-3  # peak learning rate
  config.opt.weight_decay = 1e-4
  config.opt.warmup_steps = 200
  config.opt.grad_clip = 1.0  # global norm; 0 disables
  config.opt.ema_momentum = 0.0  # > 0: keep an EMA of the parameters (MoCo v3's momentum encoder)

  config.train = ml_collections.ConfigDict()
  config.train.steps = 10_000  # the same budget and schedule for every initialisation
  config.train.log_every = 50  # steps
  config.train.checkpoint_every = 1000  # steps
  config.train.eval_every = 1000  # steps between validation on test-volume slices (logged, never chosen on)
  config.train.validation_slices = 64  # fixed test-volume slices for the logged validation

  if arg.demo or arg.tiny:
    config.data.synthetic.num_volumes = 48
    config.data.synthetic.shape = (192, 64, 64)
    config.data.downscale_to = 0
    config.data.slice_size = 64
    config.data.num_workers = 0
    config.model.width = 16
    config.model.small_stem = True
    config.model.aspp_rates = (1, 2, 3)  # a 4 x 4 map at output stride 16 of 64 px slices
    config.model.decoder_channels = 64  # 4x the encoder's width, as the paper's (256 was 3x slower a step)
    config.opt.warmup_steps = 50
    config.train.steps = 1500
    config.train.log_every = 25
    config.train.checkpoint_every = 500
    config.train.eval_every = 500
    config.train.validation_slices = 32
  if arg.tiny:
    config.data.synthetic.num_volumes = 4
    config.data.synthetic.shape = (48, 24, 24)
    config.data.slice_size = 24
    config.data.num_annotated = 3
    config.data.batch_size = 4
    config.model.name = "resnet_tiny"
    config.model.width = 4
    config.model.aspp_rates = (1,)
    config.model.decoder_channels = 16
    config.train.steps = 2
    config.train.log_every = 1
    config.train.checkpoint_every = 1
    config.train.eval_every = 1
    config.train.validation_slices = 4
  return config
