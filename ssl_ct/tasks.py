"""Per-task glue: which model, data loader, example batch and localizer a config's task uses."""

import dataclasses

import jax
import numpy as np

from ssl_ct import localize_rotation, localize_sorting, refine
from ssl_ct.data import labeled, pipeline
from ssl_ct.models import heads, segmentation


@dataclasses.dataclass
class RotationTask:
  """Siamese rotation loss; localization by the certainty p0 of unrotated pairs (paper 2.1, 2.2)."""

  config: object
  units = "pairs"
  selection = ("val_rot_acc", "max")  # the validation metric train.keep_best and train.patience follow

  def make_model(self):
    return heads.make_model(self.config.model, num_classes=len(self.config.data.angles_deg))

  def init_params(self):
    return None  # pretext tasks start from random parameters

  def make_loader(self, dataset, *, seed, batch_size, shard_options=None):
    return pipeline.make_rotation_loader(dataset, self.config.data, seed=seed, batch_size=batch_size, shard_options=shard_options)

  def validation_batches(self, dataset):
    # Every volume is trained on (localization needs no held-out volumes): fixed pairs from them.
    data, train = self.config.data, self.config.train
    return pipeline.rotation_validation_batches(
      dataset, data, seed=self.config.seed, num_pairs=train.validation_pairs, batch_size=data.batch_size
    )

  def example_batch(self, batch_size):
    n = self.config.data.slice_size
    image = jax.ShapeDtypeStruct((batch_size, n, n, 1), np.float32)
    label = jax.ShapeDtypeStruct((batch_size,), np.int32)
    return {"ref": image, "twin": image, "angle": label, "volume": label, "axis": label}

  def distrust(self, pretext):
    """Why boxes from a model with these validation metrics cannot be trusted, or ""."""
    chance = 1 / len(self.config.data.angles_deg)
    accuracy = pretext.get("val_rot_acc")
    needed = self.config.localize.min_accuracy_over_chance * chance
    if accuracy is None:
      return "the checkpoint has no validation accuracy (train with train.eval_every)"
    if accuracy < needed:
      return (
        f"the pretext task did not learn (validation rotation accuracy {accuracy:.3f}, chance {chance:.3f}, needed {needed:.3f})"
      )
    return ""

  def make_localizer(self, model, params):
    angles = list(self.config.data.angles_deg)
    size, seed = self.config.data.slice_size, self.config.seed
    # A pair without sample gives the model nothing to read the angle from: p0 at chance.
    rule = _rule(self.config.localize, "min_accuracy_over_chance", "model")
    localizer = localize_rotation.RotationLocalizer(
      model, params, zero_class=angles.index(0), size=size, seed=seed, floor=1 / len(angles), **rule
    )
    return _refined(localizer, self.config.localize, lambda shape: self.config.localize.refine_axis)


@dataclasses.dataclass
class SortingTask:
  """Pairwise ranking of k slices from one volume; localization by MC-dropout variance (paper 2.1, 2.2)."""

  config: object
  units = "slices"
  selection = ("val_mean_displacement", "min")  # on held-out volumes: what train.keep_best and train.patience follow

  def make_model(self):
    return heads.make_model(self.config.model)

  def init_params(self):
    return None  # pretext tasks start from random parameters

  def split(self, dataset):
    """(train ids, validation ids) of the dataset's volumes."""
    names = [v.name for v in dataset.volumes]
    return pipeline.split_volumes(names, self.config.data.validation_fraction, self.config.seed)

  def make_loader(self, dataset, *, seed, batch_size, shard_options=None):
    train_ids, _ = self.split(dataset)
    return pipeline.make_sorting_loader(
      dataset, self.config.data, train_ids, seed=seed, batch_size=batch_size, shard_options=shard_options
    )

  def validation_batches(self, dataset):
    _, val_ids = self.split(dataset)
    num = self.config.train.validation_groups
    return pipeline.sorting_validation_batches(dataset, self.config.data, val_ids, seed=self.config.seed, num_groups=num)

  def example_batch(self, batch_size):
    n = self.config.data.slice_size
    label = jax.ShapeDtypeStruct((batch_size,), np.int32)
    return {
      "image": jax.ShapeDtypeStruct((batch_size, n, n, 1), np.float32),
      "position": jax.ShapeDtypeStruct((batch_size,), np.float32),
      "group": label,
      "volume": label,
    }

  def distrust(self, pretext):
    """Why boxes from a model with these validation metrics cannot be trusted, or ""."""
    k = self.config.data.slices_per_batch
    chance = (k * k - 1) / (3 * k)  # mean displacement of a random order of k slices
    displacement = pretext.get("val_mean_displacement")
    allowed = self.config.localize.max_displacement_over_chance * chance
    if displacement is None:
      return "the checkpoint has no validation displacement (hold out volumes: data.validation_fraction > 0)"
    if displacement > allowed:
      return f"the pretext task did not learn (validation mean displacement {displacement:.2f} at k={k}, chance {chance:.2f}, allowed {allowed:.2f})"
    return ""

  def make_localizer(self, model, params):
    data = self.config.data
    rule = _rule(self.config.localize, "max_displacement_over_chance", "model")
    localizer = localize_sorting.SortingLocalizer(
      model, params, size=data.slice_size, sort_axis=data.sort_axis, seed=self.config.seed, **rule
    )
    return _refined(localizer, self.config.localize, lambda shape: pipeline.sort_axis(shape, data.sort_axis))


@dataclasses.dataclass
class SegmentationTask:
  """Supervised segmentation of labelled slices (paper 3.2); the encoder pre-trained by any pretext task (`init`)."""

  config: object
  units = "slices"

  def make_model(self):
    return segmentation.make_model(self.config.model, num_classes=self.config.data.num_classes)

  def split(self, dataset):
    """(unlabelled, fine-tune, test) volume ids."""
    data = self.config.data
    return labeled.annotated_split(
      dataset, num_annotated=data.num_annotated, test_fraction=data.test_fraction, seed=data.split_seed
    )

  def make_loader(self, dataset, *, seed, batch_size, shard_options=None):
    _, finetune, _ = self.split(dataset)
    data = self.config.data
    records = labeled.labelled_records(
      dataset, finetune, axis=data.segment_axis, label_fraction=data.label_fraction, seed=data.split_seed
    )
    records = labeled.oversample_foreground(dataset, records, axis=data.segment_axis, fraction=data.foreground_fraction)
    return labeled.make_loader(dataset, data, records, seed=seed, batch_size=batch_size, shard_options=shard_options)

  def validation_batches(self, dataset):
    # Slices of the test volumes, logged only: no choice (step, rule) is made on them.
    _, _, test = self.split(dataset)
    data = self.config.data
    records = labeled.labelled_records(dataset, test, axis=data.segment_axis, label_fraction=1.0, seed=data.split_seed)
    read = labeled.reader(dataset, data, rotate=False)
    picked = [records[i] for i in np.linspace(0, len(records) - 1, self.config.train.validation_slices).round().astype(int)]
    items = [read.random_map({"volume": v, "index": i}, None) for v, i in picked]
    size = data.batch_size
    return [{k: np.stack([x[k] for x in items[i : i + size]]) for k in items[0]} for i in range(0, len(items) - size + 1, size)]

  def example_batch(self, batch_size):
    data = self.config.data
    n = data.slice_size
    labels = (
      {"boxes": jax.ShapeDtypeStruct((batch_size, data.max_boxes, 5), np.int32)}
      if data.label_kind == "box"
      else {"labels": jax.ShapeDtypeStruct((batch_size, n, n), np.int32)}
    )
    return {
      "image": jax.ShapeDtypeStruct((batch_size, n, n, 1), np.float32),
      **labels,
      "volume": jax.ShapeDtypeStruct((batch_size,), np.int32),
    }

  def init_params(self):
    """The pre-trained encoder of `config.init` (a pretext workdir), loaded by name; None for random init."""
    if not self.config.init:
      return None
    from ssl_ct import segment  # segment reads pretext workdirs through this module's TASKS

    encoder = segment.pretrained_encoder(self.config.init, self.config.model)
    return lambda params: segment.load_encoder(params, encoder)


@dataclasses.dataclass
class ContrastiveTask:
  """SimCLR (loss nt_xent) or MoCo v3 (loss moco_v3, with opt.ema_momentum > 0) on two augmented
  views of each slice: the general-purpose pre-training baselines of the paper's Table 1."""

  config: object
  units = "pairs"

  def make_model(self):
    return heads.make_contrastive_model(self.config.model)

  def make_loader(self, dataset, *, seed, batch_size, shard_options=None):
    return pipeline.make_contrastive_loader(
      dataset, self.config.data, seed=seed, batch_size=batch_size, shard_options=shard_options
    )

  def validation_batches(self, dataset):
    del dataset  # the contrastive accuracy of the training batches is logged; the segmentation study is the test
    return []

  def example_batch(self, batch_size):
    n = self.config.data.slice_size
    view = jax.ShapeDtypeStruct((batch_size, n, n, 1), np.float32)
    return {"view1": view, "view2": view, "volume": jax.ShapeDtypeStruct((batch_size,), np.int32)}

  def init_params(self):
    return None


TASKS = {"rotation": RotationTask, "sorting": SortingTask, "segmentation": SegmentationTask, "contrastive": ContrastiveTask}
# The tasks whose models localize samples (a localizer and a trust rule); the others pre-train or segment.
LOCALIZING = ("rotation", "sorting")


_REFINE_KEYS = {  # config.localize key -> refine.refine_box argument
  "refine": None,
  "refine_axis": None,
  "refine_band": "band",
  "refine_false_positive": "false_positive",
  "refine_min_fraction": "min_fraction",
  "refine_min_sample_slices": "min_sample_slices",
  "refine_min_coverage": "min_coverage",
  "refine_cut_slices": "cut_slices",
  "refine_cut_rank": "cut_rank",
  "refine_cut_tiles": "cut_tiles",
  "refine_measure": "measure",
  "refine_plane": "plane",
  "refine_tail_fraction": "tail_fraction",
  "refine_fit_fraction": "fit_fraction",
  "refine_faint_fraction": "faint_fraction",
  "refine_min_component": "min_component",
  "refine_fit_axis": "fit_axis",
  "refine_across_band": "across_band",
  "refine_from_threshold": "from_threshold",  # refine.Refined's, not refine_box's
}


def _rule(localize_config, *others):
  """The localize section for the localizer: without the refinement's settings (those go to
  refine.Refined) and the `others` (the trust gate's, the model's source)."""
  return {k: v for k, v in localize_config.items() if k not in _REFINE_KEYS and k not in others}


def _refined(localizer, localize_config, axis_of):
  """The localizer, its boxes grown by ssl_ct/refine.py when `localize.refine` is set."""
  if not localize_config.get("refine", False):
    return localizer
  settings = {name: localize_config[key] for key, name in _REFINE_KEYS.items() if name and key in localize_config}
  return refine.Refined(localizer, axis_of, **settings)


def get_task(config):
  if config.task not in TASKS:
    raise ValueError(f"unknown task {config.task!r}; valid tasks: {', '.join(TASKS)}")
  return TASKS[config.task](config)
