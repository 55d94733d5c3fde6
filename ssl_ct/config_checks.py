"""Validates a config before any work starts; each problem is one line naming the key and the fix."""

import math
import numbers

from ssl_ct.errors import InputError


def _is_int(v, low=None):
  return isinstance(v, numbers.Integral) and not isinstance(v, bool) and (low is None or v >= low)


def _is_num(v, low=None, high=None):
  ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
  return ok and (low is None or v >= low) and (high is None or v <= high)


# (dotted key, predicate, what a valid value is). Keys absent from a config are not checked:
# the rotation and sorting configs have different data sections.
_RULES = (
  ("seed", _is_int, "an integer"),
  ("data.path", lambda v: isinstance(v, (str, list, tuple, dict)), "a path, glob, spec or list of them ('' = synthetic)"),
  ("data.synthetic.seed", _is_int, "an integer"),
  ("data.synthetic.num_volumes", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("data.synthetic.shape", lambda v: len(v) == 3 and all(_is_int(n, 16) for n in v) and v[1] == v[2], "(z, n, n), sizes >= 16"),
  ("data.synthetic.z_jitter", lambda v: _is_num(v, 0, 0.5), "a fraction in [0, 0.5]"),
  ("init", lambda v: isinstance(v, str), "a pre-training workdir, or '' for a random encoder"),
  ("data.fill_missing", lambda v: isinstance(v, bool), "True or False"),
  ("data.segment_axis", lambda v: v in (0, 1, 2), "0, 1 or 2"),
  ("data.num_classes", lambda v: _is_int(v, 2), "an integer >= 2 (background included)"),
  ("data.num_annotated", lambda v: _is_int(v, 0), "an integer >= 0 (0: every labelled volume)"),
  ("data.test_fraction", lambda v: _is_num(v, 0, 0.9) and v > 0, "a fraction in (0, 0.9]"),
  ("data.label_fraction", lambda v: _is_num(v, 0, 1) and v > 0, "a fraction in (0, 1]"),
  ("data.label_kind", lambda v: v in ("mask", "box"), "'mask' or 'box'"),
  ("data.max_boxes", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("data.foreground_fraction", lambda v: _is_num(v, 0, 1) and v < 1, "a fraction in [0, 1)"),
  ("model.decoder_channels", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("model.aspp_rates", lambda v: len(v) >= 1 and all(_is_int(r, 1) for r in v), "whole atrous rates >= 1"),
  ("train.keep_best", lambda v: isinstance(v, bool), "True or False"),
  ("train.patience", lambda v: _is_int(v, 0), "an integer >= 0 (0: train every step)"),
  ("train.validation_slices", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("model.projection_hidden", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("model.projection_dim", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("model.predictor_hidden", lambda v: _is_int(v, 0), "an integer >= 0 (0: no predictor)"),
  ("data.remote_timeout_s", lambda v: _is_num(v) and v > 0, "a positive number of seconds"),
  ("data.remote_retries", lambda v: _is_int(v, 0), "an integer >= 0"),
  ("data.analysis_copy", lambda v: v in ("auto", "always", "never"), "'auto', 'always' or 'never'"),
  ("data.downscale_to", lambda v: _is_int(v, 0), "0 (as stored) or a size in voxels"),
  ("data.low_percentile", lambda v: _is_num(v, 0, 100), "a percentile in [0, 100]"),
  ("data.high_percentile", lambda v: _is_num(v, 0, 100), "a percentile in [0, 100]"),
  ("data.slice_size", lambda v: _is_int(v, 8), "an integer >= 8 (pixels)"),
  ("data.twin_range", lambda v: _is_num(v, 0, 1) and v > 0, "a fraction of the axis in (0, 1]"),
  ("data.angles_deg", lambda v: len(v) >= 2 and 0 in v and len(set(v)) == len(v), "at least two distinct angles including 0"),
  ("data.batch_size", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("data.slices_per_batch", lambda v: _is_int(v, 2), "an integer >= 2"),
  ("data.groups_per_batch", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("data.groups_per_epoch_per_volume", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("data.rotate", lambda v: isinstance(v, bool), "True or False"),
  ("data.augment_strength", lambda v: _is_num(v, 0, 4), "a number in [0, 4] (0: no augmentation)"),
  ("data.sort_axis", lambda v: v in (-1, 0, 1, 2), "-1 (longest) or 0, 1, 2"),
  ("data.index_distribution", lambda v: v in ("uniform", "gennorm"), "'uniform' or 'gennorm'"),
  ("data.gennorm_beta", lambda v: _is_num(v) and v > 0, "a positive number"),
  ("data.gennorm_scale", lambda v: _is_num(v) and v > 0, "a positive fraction of the axis"),
  ("data.validation_fraction", lambda v: _is_num(v, 0, 0.9), "a fraction in [0, 0.9]"),
  ("data.num_workers", lambda v: _is_int(v, 0), "an integer >= 0"),
  ("data.in_memory_mb", lambda v: _is_num(v, 0), "MiB >= 0 (0: read every slice from the files)"),
  ("model.width", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("model.dropout", lambda v: _is_num(v, 0) and v < 1, "a rate in [0, 1)"),
  ("model.head_hidden", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("model.output_stride", lambda v: v in (4, 8, 16, 32), "4, 8, 16 or 32 (input pixels per feature-map cell)"),
  ("opt.lr", lambda v: _is_num(v) and v > 0, "a positive number"),
  ("opt.weight_decay", lambda v: _is_num(v, 0), "a number >= 0"),
  ("opt.warmup_steps", lambda v: _is_int(v, 0), "an integer >= 0"),
  ("opt.grad_clip", lambda v: _is_num(v, 0), "a number >= 0 (0 disables)"),
  ("opt.ema_momentum", lambda v: _is_num(v, 0) and v < 1, "a momentum in [0, 1) (0: no EMA parameters)"),
  ("train.steps", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("train.log_every", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("train.checkpoint_every", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("train.eval_every", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("train.validation_groups", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("train.validation_pairs", lambda v: _is_int(v, 1), "an integer >= 1 (rounded down to whole batches)"),
  ("localize.variance", lambda v: v in ("exact", "sampled"), "'exact' (closed form) or 'sampled' (T dropout passes)"),
  ("localize.num_samples", lambda v: _is_int(v, 2), "an integer >= 2 (MC-dropout passes)"),
  ("localize.top_percent", lambda v: _is_num(v, 0, 100) and v > 0, "a percentage in (0, 100]"),
  ("localize.variance_of", lambda v: v in ("position", "embedding"), "'position' or 'embedding'"),
  ("localize.extent", lambda v: v in ("score", "variance"), "'score' or 'variance' (the paper's rule)"),
  ("localize.flat_fraction", lambda v: _is_num(v, 0, 0.5) and v > 0, "a fraction of the slices in (0, 0.5]"),
  ("crop.margin", lambda v: _is_num(v, 0, 0.5), "a fraction of the side in [0, 0.5]"),
  (
    "crop.measured_margin",
    # One value on the command line over a three-value default arrives as a 1-tuple: the same on every face.
    lambda v: _is_num(v, 0, 0.5) or (isinstance(v, (tuple, list)) and len(v) in (1, 3) and all(_is_num(x, 0, 0.5) for x in v)),
    "a fraction of the side in [0, 0.5], or three (z, y, x) (crop.margin: the same on every face)",
  ),
  ("crop.margin_um", lambda v: _is_num(v, 0), "micrometres >= 0 (0: use crop.margin)"),
  ("crop.levels", lambda v: _is_int(v, 0), "an integer >= 0 (0: automatic)"),
  (
    "data.voxel_size_um",
    lambda v: isinstance(v, (tuple, list)) and len(v) in (0, 1, 3) and all(_is_num(x) and x > 0 for x in v),
    "() or one or three micrometres > 0, e.g. (0.65, 0.65, 0.65)",
  ),
  ("crop.out_dir", lambda v: isinstance(v, str), "a folder path ('' = <workdir>/cropped)"),
  (
    "localize.twin_offsets",
    lambda v: len(v) >= 1 and all(_is_int(f, 1) for f in v),
    "whole numbers of slices >= 1",
  ),
  ("localize.batch_size", lambda v: _is_int(v, 1), "an integer >= 1"),
  ("localize.smooth", lambda v: _is_num(v, 0, 0.5), "a fraction of the axis in [0, 0.5]"),
  ("localize.level", lambda v: _is_num(v, 0, 1), "a fraction in [0, 1]"),
  ("localize.cut_noise_factor", lambda v: _is_num(v, 0), "a number >= 0 (times the background noise)"),
  ("localize.min_contrast", lambda v: _is_num(v, 0, 1), "a certainty difference in [0, 1]"),
  ("localize.fill_margin", lambda v: _is_num(v, 0, 1) and v > 0, "a certainty above chance in (0, 1]"),
  ("localize.fill_level", lambda v: _is_num(v, 0, 1), "a fraction in [0, 1] of the way from chance to the sample's certainty"),
  ("localize.fill_percentile", lambda v: _is_num(v, 0, 50), "a percentile in [0, 50]"),
  ("localize.smooth_percentile", lambda v: _is_num(v, 0, 100), "a percentile in [0, 100]"),
  ("localize.min_accuracy_over_chance", lambda v: _is_num(v, 0), "a number >= 0 (times chance; 0 trusts every model)"),
  (
    "localize.max_displacement_over_chance",
    lambda v: _is_num(v, 0),
    "a number >= 0 (fraction of chance; >= 1 trusts every model)",
  ),
  ("localize.max_gap", lambda v: _is_num(v, 0, 0.5), "a fraction of the axis in [0, 0.5]"),
  ("localize.trim", lambda v: isinstance(v, bool), "True or False"),
  ("localize.trim_level", lambda v: _is_num(v, 0, 1), "a fraction in [0, 1]"),
  ("localize.trim_smooth_percentile", lambda v: _is_num(v, 0, 100), "a percentile in [0, 100]"),
  ("localize.refine", lambda v: isinstance(v, bool), "True or False"),
  ("localize.refine_axis", lambda v: v in (0, 1, 2), "0, 1 or 2 (the axis holders and medium do not change along)"),
  ("localize.refine_band", lambda v: _is_num(v, 0, 1) and v > 0, "a fraction of the volume's side in (0, 1]"),
  ("localize.refine_false_positive", lambda v: _is_num(v, 0, 0.1) and v > 0, "a fraction of empty voxels in (0, 0.1]"),
  ("localize.refine_min_fraction", lambda v: _is_num(v, 0, 1) and v > 0, "a fraction of the cross-section in (0, 1]"),
  ("localize.refine_min_sample_slices", lambda v: _is_num(v, 0, 1), "a fraction of the box's slices in [0, 1] (0: never null)"),
  ("localize.refine_min_coverage", lambda v: _is_num(v, 0, 1), "a fraction of the slices' foreground in [0, 1] (0: off)"),
  ("localize.refine_plane", lambda v: v in ("grow", "fit"), "'grow' (faces across refine_axis move out only) or 'fit'"),
  ("localize.refine_tail_fraction", lambda v: _is_num(v, 0, 1), "a fraction of the cross-section in [0, 1] (0: no tails)"),
  (
    "localize.refine_fit_fraction",
    lambda v: _is_num(v, 0, 1),
    "a fraction of the cross-section in [0, 1] (0: refine_min_fraction)",
  ),
  (
    "localize.refine_faint_fraction",
    lambda v: _is_num(v, 0, 1),
    "a fraction of the box's voxels in [0, 1] (0: every box's faces may be measured)",
  ),
  (
    "localize.refine_min_component",
    lambda v: _is_num(v, 0, 1),
    "a fraction of the largest foreground component in [0, 1] (0: every component counts)",
  ),
  ("localize.refine_fit_axis", lambda v: isinstance(v, bool), "True or False (the faces along refine_axis fit too)"),
  (
    "localize.refine_from_threshold",
    lambda v: isinstance(v, bool),
    "True or False (a box without empty slices along refine_axis is refined from the threshold box's extent)",
  ),
  (
    "localize.refine_across_band",
    lambda v: _is_num(v, 0, 1),
    "a fraction of the volume's side in [0, 1] (0: no growths across refine_axis)",
  ),
  ("localize.refine_measure", lambda v: v in ("all", "plane"), "'all' or 'plane' (the faces that may count as measured)"),
  ("localize.refine_cut_slices", lambda v: _is_int(v, 2), "an integer >= 2 (slices)"),
  ("localize.refine_cut_rank", lambda v: _is_num(v, 0, 100), "a percentile in [0, 100] (50: the median over runs)"),
  ("localize.refine_cut_tiles", lambda v: _is_int(v, 1), "an integer >= 1 (pieces per in-plane side; 1: whole slices)"),
)


def _lookup(config, dotted):
  node = config
  for part in dotted.split("."):
    if part not in node:
      return False, None
    node = node[part]
  return True, node


def validate_components(config):
  """Raises InputError when a component name is not in its registry (imports the registries: jax, flax)."""
  from ssl_ct import losses, tasks, train
  from ssl_ct.models import resnet, segmentation

  for key, registry in (
    ("task", tasks.TASKS),
    ("model.name", resnet.ENCODERS),
    ("model.decoder", segmentation.DECODERS),
    ("model.dtype", resnet.COMPUTE_DTYPES),
    ("opt.name", train.OPTIMIZERS),
    ("loss.name", losses.LOSSES),
  ):
    present, value = _lookup(config, key)
    if present and value not in registry:
      raise InputError(f"config value {key}={value!r} is invalid (expected one of {', '.join(registry)}); set --config.{key}=...")


def _synthetic_rules():
  """Rules against the synthetic generators' registries (imported here: scipy, tensorstore)."""
  from ssl_ct.data import phantoms, synthetic

  return (
    ("data.synthetic.kind", lambda v: v in phantoms.GENERATORS, f"one of {sorted(phantoms.GENERATORS)}"),
    ("data.synthetic.dtype", lambda v: v in synthetic.DTYPES, f"one of {synthetic.DTYPES}"),
  )


def validate(config):
  """Raises InputError on the first invalid value (component names: validate_components)."""
  for key, predicate, expected in _RULES + _synthetic_rules():
    present, value = _lookup(config, key)
    if not present:
      continue
    try:
      ok = predicate(value)
    except TypeError:
      ok = False
    if not ok:
      raise InputError(f"config value {key}={value!r} is invalid (expected {expected}); set --config.{key}=...")
  if config.task == "sorting" and config.data.batch_size % config.data.slices_per_batch:
    raise InputError("config data.batch_size must be a multiple of data.slices_per_batch; set data.groups_per_batch instead")
  if config.loss.name == "moco_v3" and (config.opt.ema_momentum <= 0 or config.model.predictor_hidden <= 0):
    raise InputError(
      "config loss.name=moco_v3 needs a momentum encoder and a predictor; set opt.ema_momentum=0.99 and model.predictor_hidden"
    )
  boxes_present, label_kind = _lookup(config, "data.label_kind")
  if boxes_present and (label_kind == "box") != (config.loss.name == "box_tightness"):
    raise InputError(
      f"config data.label_kind={label_kind!r} does not go with loss.name={config.loss.name!r}: boxes train with "
      "box_tightness, label maps with cross_entropy_dice; use the config arg `boxes` (segment_medaka.py:demo,boxes)"
    )
  if config.task == "sorting" and config.model.dropout <= 0:
    raise InputError("config model.dropout=0 leaves MC dropout nothing to sample; set --config.model.dropout=0.1")
  if config.data.low_percentile >= config.data.high_percentile:
    raise InputError("config data.low_percentile is not below data.high_percentile; lower the first or raise the second")
