r"""Rotation loss on Xenopus-like embryos (paper section 3.3).

Paper setting (GPU/TPU): ResNet-50, volumes downscaled to 504^3, 7 angle classes from
-90 to 90 deg, twin slice within 100 of 504 slices.
  python -m ssl_ct.main --config=configs/rotation_xenopus.py --workdir=/tmp/rot

2-core CPU demo on the embedded synthetic set (a narrow ResNet on 64 px slices):
  python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=/tmp/rot_demo

Args (after the colon): variant=r18|r34|r50|r101|r152, demo, tiny (test-sized).
"""

import ml_collections

from ssl_ct.configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, variant="r50", demo=False, tiny=False)
  config = ml_collections.ConfigDict()
  config.task = "rotation"
  config.seed = 0  # seeds data order, init and dropout

  config.data = ml_collections.ConfigDict()
  common.input_fields(config.data)
  config.data.synthetic = ml_collections.ConfigDict()
  config.data.synthetic.kind = "xenopus"
  config.data.synthetic.seed = 0  # phantoms are deterministic in it
  config.data.synthetic.num_volumes = 34  # paper: 34 Xenopus volumes
  config.data.synthetic.shape = (504, 504, 504)  # voxels (z, y, x)
  config.data.synthetic.z_jitter = 0.0  # +- fraction of z size between volumes
  config.data.synthetic.dtype = "float32"  # float32 | uint16 | uint8 (windowed)
  config.data.downscale_to = 504  # longest side (voxels) the volumes are read at; 0 = as stored
  config.data.low_percentile = 0.5  # %, intensity mapped to 0
  config.data.high_percentile = 99.5  # %, intensity mapped to 1
  config.data.slice_size = 504  # px, side of the model input
  config.data.twin_range = 100 / 504  # twin offset bound l, as a fraction of the axis (paper 100 of 504)
  config.data.angles_deg = tuple(range(-90, 91, 30))  # deg, one class each
  config.data.batch_size = 32  # pairs per step, over all devices
  config.data.num_workers = 4  # grain worker processes; 0 = in the main process

  config.model = ml_collections.ConfigDict()
  config.model.name = {"r18": "resnet18", "r34": "resnet34", "r50": "resnet50", "r101": "resnet101", "r152": "resnet152"}[
    arg.variant
  ]
  config.model.width = 64  # channels of the first stage
  config.model.dropout = 0.1  # rate before the feature map (MC dropout); 0 disables
  config.model.head_hidden = 256  # units of the angle head f_phi
  config.model.small_stem = False  # True: 3x3 stride-2 stem without max-pool, for small slices
  config.model.output_stride = 32  # input pixels per superpixel; smaller: later stages dilate, finer grid
  config.model.dtype = "float32"  # compute dtype; "bfloat16" on a GPU/TPU (parameters stay float32)

  config.loss = ml_collections.ConfigDict()
  config.loss.name = "rotation_nll"
  config.loss.kw = ml_collections.ConfigDict({"label_smoothing": 0.0})

  config.opt = ml_collections.ConfigDict()
  config.opt.name = "adamw"
  config.opt.lr = 1e-3  # peak learning rate
  config.opt.weight_decay = 1e-4
  config.opt.warmup_steps = 500
  config.opt.grad_clip = 1.0  # global norm; 0 disables
  config.opt.ema_momentum = 0.0  # > 0: keep an EMA of the parameters (MoCo v3's momentum encoder)

  config.train = ml_collections.ConfigDict()
  config.train.steps = 20_000
  config.train.log_every = 50  # steps
  config.train.checkpoint_every = 1000  # steps
  config.train.eval_every = 1000  # steps between evaluations of the pretext task on fixed pairs
  config.train.validation_pairs = 672  # fixed pairs (from every volume and axis) for val_rot_acc[_z|_y|_x]
  # The validation pairs come from the training volumes (localization holds none out), so their best
  # step is not a held-out choice: the latest checkpoint localizes, and no run stops early by default.
  config.train.keep_best = False  # True: localize with the step of the best val_rot_acc (<workdir>/best)
  config.train.patience = 0  # > 0: stop after this many evaluations without a better val_rot_acc

  config.localize = ml_collections.ConfigDict()
  # Unrotated twins at +- these many slices (the paper: the adjacent slice). (1,) alone was tried on
  # 2026-12-07 and not kept: no better on held-out sets, 0.1x more volume on packed heads (README, *Near twins*).
  config.localize.twin_offsets = (1, 2)
  config.localize.batch_size = 64  # pairs per scoring call
  config.localize.smooth = 0.03  # rank-filter window, fraction of the axis
  config.localize.smooth_percentile = 50.0  # the filter's rank: 50 = median; lower keeps only steadily high slices high
  config.localize.cut_noise_factor = 2.0  # cut this many times the background's slice-to-slice noise above it
  config.localize.level = 0.0  # and at least this far from background (0) to sample (1) certainty
  config.localize.min_contrast = 0.1  # sample minus background certainty below this: no sample
  config.localize.max_gap = 0.02  # dips shorter than this fraction of the axis do not split the sample
  # The sample fills an axis when even its least certain tenth of slices is this far above chance
  # (1 / angle classes, what a pair without sample scores); all three axes: it fills the field.
  config.localize.fill_margin = 0.2
  # "Least certain": the smoothed curve's minimum (percentile 0), so that a stretch of empty slices
  # (at chance) longer than half the smoothing window means the axis is not filled; at the 10th
  # percentile an axis with under a tenth of its slices empty passed for filled (C57BL6, README).
  config.localize.fill_percentile = 0.0
  # ... and this fraction of the way from chance to the sample's certainty (its 90th percentile),
  # where some axis of the volume reaches chance (ssl_ct/localize_rotation.py axis_intervals): on
  # two of xenopus seed 7's embryos the model reads the medium on every empty axial slice
  # (certainty 0.45-0.5, the sample 0.98), and the margin alone took z whole. Chosen on xenopus
  # and packed_head seed 7 (experiments/select_fill.py; README "Where an axis is filled"); 0 = the
  # margin alone.
  config.localize.fill_level = 0.75
  # Cut the box back where the certainty took in packing or a holder beside the sample: each face
  # moves in to the outer of the steady core (the curves cut at trim_level, ranked at
  # trim_smooth_percentile) and the threshold baseline's box, never out (ssl_ct/fusion.py).
  # Chosen on packed_head seed 4 and xenopus seed 4 (README: experiments/select_fusion.py): the
  # least error on the packed set with every sample of both kept; inert on the xenopus sets.
  config.localize.trim = True
  config.localize.trim_level = 0.75
  config.localize.trim_smooth_percentile = 25.0
  # Grow the box to the sample's faint parts by background subtraction along refine_axis (the
  # scan's rotation axis, along which holders, medium and rings do not change; ssl_ct/refine.py).
  # The sorting config's settings before its plane faces fit (README); a volume
  # without empty slices along the axis (a sample filling it) keeps its box.
  config.localize.refine = True
  config.localize.refine_axis = 0
  config.localize.refine_band = 0.25  # each face moves at most this fraction of the volume's side
  config.localize.refine_false_positive = 3e-4  # foreground: a smoothed |z| only this fraction of empty voxels exceed
  # An index is sample when this fraction of the band's cross-section is foreground. 0.01 since
  # 2026-12-07 (0.005 before, the sorting config's old value): chosen on xenopus seeds 4, 5 (112^3
  # and 64^3) and packed seed 7, the least volume keeping 99.5% of every sample (README, *Growth
  # into debris*); 0.015 and up cut samples (worst 0.986).
  config.localize.refine_min_fraction = 0.01
  # A box fewer than this fraction of whose slices hold foreground is no sample (null): an empty
  # holder the network boxed anyway. 0 until the cut over tiles below (at 0.5 2-4 of 12 seed-4/5
  # embryos, nearly iso-attenuating, had come back null); then chosen with
  # experiments/select_empty.py on the selection sets: 0.5 nulled 44 of 48 empty holders (the other
  # 4 on packed-head boxes that fill z: nothing to compare with) and none of 144 samples.
  config.localize.refine_min_sample_slices = 0.5
  # The coverage rule (the sorting config's 0.9; ssl_ct/refine.py): a box holding less of the
  # foreground along z or across its slices grows to it. On xenopus seed 4 two boxes ended inside
  # their embryos (worst kept 0.431 after the crop; 1.000 with the rule; README).
  config.localize.refine_min_coverage = 0.9
  # The foreground cut: measured on runs of this many background slices, each cut into tiles x
  # tiles pieces in the plane, the given percentile over the pieces taken. Runs of 8 at the 25th
  # percentile (whole slices) since the xenopus seed-5 demo, where most runs held a faint embryo
  # end or debris and two growths stalled 7 and 9 slices inside their embryos; 2 x 2 tiles at the
  # median since 2026-12-07: with only a few background runs (an embryo filling most of the axis)
  # debris in most of them had put the cut at the debris's own z-scores, and the refinement then
  # saw only a sample's core (xenopus seed 13 with seed 10's model: an embryo kept 0.4878 after
  # the crop). Chosen with the fit fraction and margins below on xenopus 4, 5, 7, 10-17 and
  # packed_head 7 (experiments/select_axis_margin.py --cut-tiles; README, "Per-face margins").
  config.localize.refine_cut_slices = 8
  config.localize.refine_cut_rank = 50.0
  config.localize.refine_cut_tiles = 2
  # Which faces the refinement may call measured (crop.measured_margin goes on those): "all", or
  # "plane", those across refine_axis only (the setting before the cut above; README).
  config.localize.refine_measure = "all"
  # The faces across refine_axis: "grow" (outward only) or "fit" (in to where the foreground ends,
  # too). "fit" with the measured margin across z 0.01 (below) chosen on xenopus seeds 4, 5, 7 and
  # packed_head seed 7 (experiments/select_axis_margin.py --planes=grow,fit; README "Per-face margins").
  config.localize.refine_plane = "fit"
  # A face fit moves in stops where the runs holding this fraction of the band's cross-section end
  # (half refine_min_fraction): a faint embryo's weak foreground keeps its face. On the xenopus
  # seed-9 report set the fit at refine_min_fraction cut 6-11% of a faint embryo (README); then
  # chosen on the selection sets xenopus 4, 5, 7, 10, 11 and packed_head 7 with the margins below
  # (experiments/select_axis_margin.py --fit-fractions --tail-fractions; README "Per-face margins").
  config.localize.refine_fit_fraction = 0.0025
  # The margin past a measured face from the refinement's tail there (indices still holding this
  # fraction of the band's cross-section as foreground; ssl_ct/refine.py _tails); 0: none. Chosen
  # with the fit fraction above: 0.0025 was the rule's pick with the fit at refine_min_fraction
  # (7661a05), none with the fit fraction.
  config.localize.refine_tail_fraction = 0.0
  # A box whose slices hold fewer foreground voxels than this fraction of its volume is a faint
  # sample whose rim the z-scores do not see: its faces only grow and the crop keeps the uniform
  # margin on all of them (ssl_ct/refine.py). 0: off, the selection's pick with the cut above
  # (0.1 tied with it: no box on the selection sets was that faint once the cut was over tiles).
  config.localize.refine_faint_fraction = 0.0
  # The growth and fit count only the foreground's connected components holding at least this
  # fraction of the largest one's voxels (ssl_ct/refine.py _kept_components): a particle or bubble
  # apart from the sample neither pulls a face out nor holds a loose one (0: every component).
  # Chosen on 2026-12-07 on xenopus 112^3 seeds 4, 5, 64^3 seeds 4, 5 and packed_head seed 7 among
  # 0, 0.01, 0.03, 0.1, 0.3 (experiments/select_axis_margin.py --min-components; README, *Debris
  # apart from the sample*): 0.03, 0.1 and 0.3 tied on the least volume, the smallest taken.
  config.localize.refine_min_component = 0.03
  # The faces along refine_axis fit too, in to where the foreground ends (they only grew before):
  # a z face the certainty curve put past the embryo on the medium (xenopus 112^3 seed 5: 17
  # slices) shrinks to it. Chosen on 2026-12-07 on the sets above with refine_min_component 0.03
  # (experiments/select_axis_margin.py --fit-axis=False,True; README, *Debris apart from the sample*).
  config.localize.refine_fit_axis = True
  # A box that leaves too few empty slices along refine_axis (a certainty curve that read the
  # packing or holder on every slice: packed heads' z boxes took the whole axis) is refined from
  # the threshold box's extent along it instead, its growth taking back any sample slice that
  # box missed; kept as it was when that growth goes back to the ends. And a box called empty
  # while the threshold box, the same object in the plane, reaches past it along the axis (a
  # packed head whose "empty" slices held the head: null on seed 5) takes in that box's extent
  # instead (ssl_ct/refine.py axis_seed). Chosen on 2026-12-07 on the sets above and packed_head seeds 4, 5
  # (experiments/select_axis_margin.py --from-threshold=False,True; README, *Boxes along the whole axis*).
  config.localize.refine_from_threshold = True
  # A box that still leaves no empty slices along refine_axis (a head that fills z) has its faces
  # across it measured by growths along y and along x, each within this fraction of the sides
  # (the crop's uniform margin: a face found farther out, in packing that blends into the head
  # along y and x, stays unmeasured and keeps the margin); 0: off, those faces keep the margin.
  # Chosen on 2026-12-08 on packed_head seeds 4, 5, 7 and xenopus 112^3 seeds 4, 5 among 0.05,
  # 0.1, 0.25 (README, *Faces across a filled axis*).
  config.localize.refine_across_band = 0.05
  # Boxes are used only from a model whose validation rotation accuracy is at least this many
  # times chance; below it every box is null (a crop keeps the whole volume) and the report says so.
  config.localize.min_accuracy_over_chance = 2.0
  # --mode=localize with a model trained elsewhere: a workdir or an exported localizer folder
  # (--mode=export); its model config must match this one. "" = this workdir's checkpoints.
  config.localize.model = ""

  config.crop = ml_collections.ConfigDict()
  config.crop.margin = 0.05  # safety margin around the box, fraction of each side of the volume
  # On the faces the refinement measured the sample's end at (ssl_ct/crop.py face_pads; at least one
  # voxel of the grid measured on when downscaled; one fraction, or three (z, y, x)), or the face's
  # tail (localize.refine_tail_fraction) where more. 0, chosen with the fit fraction above;
  # (0.005, 0.01, 0.01) before 7661a05 (README, "Per-face margins").
  config.crop.measured_margin = (0.0, 0.0, 0.0)
  config.crop.out_dir = ""  # where cropped volumes go; "" = <workdir>/cropped
  config.crop.margin_um = 0.0  # > 0: the margin in micrometres on every face instead (needs the voxel size)
  config.crop.levels = 0  # OME-Zarr pyramid levels of each crop; 0 = halve until <= 256 voxels a side

  if arg.demo or arg.tiny:
    config.data.synthetic.num_volumes = 12
    config.data.synthetic.shape = (112, 112, 112)
    config.data.downscale_to = 0
    config.data.slice_size = 64
    config.data.batch_size = 32
    config.data.num_workers = 0
    config.model.name = "resnet18"
    config.model.width = 16
    config.model.small_stem = True
    config.model.head_hidden = 64
    config.opt.warmup_steps = 100
    config.train.steps = 2000
    config.train.log_every = 25
    config.train.checkpoint_every = 500
    config.train.eval_every = 500
    config.train.validation_pairs = 288
    config.localize.batch_size = 32
  if arg.tiny:
    config.data.synthetic.num_volumes = 3
    config.data.synthetic.shape = (40, 40, 40)
    config.data.slice_size = 32
    config.data.batch_size = 8
    config.model.name = "resnet_tiny"
    config.model.width = 4
    config.model.head_hidden = 16
    config.opt.warmup_steps = 1
    config.train.steps = 2
    config.train.log_every = 1
    config.train.checkpoint_every = 1
    config.train.eval_every = 1
    config.train.validation_pairs = 8
    config.localize.batch_size = 8
  return config
