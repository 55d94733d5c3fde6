"""Labelled slices for segmentation: which volumes are annotated, which slices fine-tune, the batches.

The paper's split (3.2): pre-training sees the unlabelled volumes; of the annotated ones a
seeded part fine-tunes and the rest is the test set, never seen in fine-tuning. Of the
fine-tuning volumes' slices, `label_fraction` (the paper's 1% and 100%) carry their labels into
training. A record is one labelled slice; the transform reads the image and its label map,
cuts the slice's field-of-view window, and resamples both to the model's input side (bilinear
for the image, nearest for the labels) under one random rotation about the slice axis.

Shapes: H x W raw slice, N model input side.
"""

import dataclasses
import os

import grain
import numpy as np
import scipy.ndimage

from ssl_ct.data import formats, fov, pipeline, slices
from ssl_ct.errors import InputError


def annotated_split(dataset, *, num_annotated, test_fraction, seed):
  """(unlabelled ids, fine-tune ids, test ids) among the dataset's volumes with labels."""
  labelled = [i for i, v in enumerate(dataset.volumes) if "labels" in dataset.truth.get(v.name, {})]
  if not labelled:
    raise InputError("no volume has a label map (truth.json 'labels'); segmentation needs annotated volumes")
  order = [labelled[i] for i in np.random.default_rng([seed, 17]).permutation(len(labelled))]
  annotated = order[: num_annotated or len(order)]
  held = max(1, int(round(test_fraction * len(annotated)))) if len(annotated) > 1 else 0
  if len(annotated) - held < 1:
    raise InputError(
      f"{len(annotated)} annotated volumes leave none to fine-tune on; add annotated volumes or lower data.test_fraction"
    )
  unlabelled = sorted(set(range(len(dataset.volumes))) - set(annotated))
  return unlabelled, sorted(annotated[held:]), sorted(annotated[:held])


def open_labels(dataset, volume_id):
  entry = dataset.truth[dataset.volumes[volume_id].name]
  labels = formats.open_volume(os.path.join(dataset.root, entry["labels"]))
  if labels.shape != dataset.input_shape(dataset.volumes[volume_id].name):
    raise InputError(f"{labels.where}: label map of shape {labels.shape} does not match its volume's; fix truth.json 'labels'")
  return labels


def resample_labels(square_SxS, size, angle_deg):
  """The labels' twin of slices.rotate_resize: the same geometry, nearest neighbour, no smoothing."""
  s = square_SxS.shape[0]
  theta = np.deg2rad(angle_deg)
  matrix = (s / size) * np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
  offset = (s - 1) / 2 - matrix @ np.array([(size - 1) / 2, (size - 1) / 2])
  return scipy.ndimage.affine_transform(square_SxS, matrix, offset, output_shape=(size, size), order=0, mode="constant")


def label_boxes(labels_NxN, max_boxes):
  """The boxes an annotator would draw on a slice: int32 max_boxes x 5 rows (class, y0, y1, x0, x1),
  ends exclusive, one tight box per 8-connected region of each foreground class, largest first;
  zero rows fill the rest. Past `max_boxes` regions, the last row bounds all the remaining ones
  (with the class of the largest of them): nothing of the structure falls outside every box.
  """
  regions = []  # (area, class, y0, y1, x0, x1)
  for label in np.unique(labels_NxN[labels_NxN > 0]):
    components, _ = scipy.ndimage.label(labels_NxN == label, structure=np.ones((3, 3)))
    for index, (ys, xs) in enumerate(scipy.ndimage.find_objects(components), start=1):
      area = int(np.sum(components[ys, xs] == index))
      regions.append((area, int(label), ys.start, ys.stop, xs.start, xs.stop))
  regions.sort(key=lambda r: (-r[0], r[1:]))
  if len(regions) > max_boxes:
    rest = regions[max_boxes - 1 :]
    merged = (0, rest[0][1], min(r[2] for r in rest), max(r[3] for r in rest), min(r[4] for r in rest), max(r[5] for r in rest))
    regions = regions[: max_boxes - 1] + [merged]
  boxes = np.zeros((max_boxes, 5), np.int32)
  for row, region in zip(boxes, regions):
    row[:] = region[1:]
  return boxes


def model_labels(labels_HxW, size, angle_deg, window):
  """int32 N x N labels from a raw label slice, cut to `window` and resampled like the image."""
  cut = labels_HxW[window[0] : window[1], window[2] : window[3]]
  return resample_labels(slices.pad_to_square(cut.astype(np.float32)), size, angle_deg).round().astype(np.int32)


@dataclasses.dataclass
class LabelledSlices(grain.sources.RandomAccessDataSource):
  """Record i -> {"volume", "index"}: the labelled slices chosen for fine-tuning."""

  records: list  # (volume id, slice index)

  def __len__(self):
    return len(self.records)

  def __getitem__(self, record):
    volume, index = self.records[record]
    return {"volume": volume, "index": index}


def slices_showing_structure(dataset, records, *, axis):
  """Per (volume, slice) record: whether its labels hold a foreground class (each label volume read once)."""
  labels = {v: open_labels(dataset, v).read() for v in dict.fromkeys(v for v, _ in records)}
  return [bool((labels[v].take(i, axis=axis) > 0).any()) for v, i in records]


def labelled_records(dataset, volume_ids, *, axis, label_fraction, seed):
  """The (volume, slice) pairs whose labels fine-tuning may use: `label_fraction` of the slices.

  Drawn stratified: that fraction of the slices showing a foreground class (at least one) and of
  the others, so that a small fraction still holds the structure in the proportion of the whole
  (a plain 1% draw of the demo's fine-tuning slices held none of the 11% that show it).
  """
  every = [
    (v, i)
    for v in volume_ids
    for i in range(*fov.valid_indices(dataset.volumes[v].shape, dataset.fovs[dataset.volumes[v].name], axis))
  ]
  if label_fraction >= 1.0:
    return every
  shows = np.array(slices_showing_structure(dataset, every, axis=axis))
  rng = np.random.default_rng([seed, 19])
  chosen = []
  for stratum in (np.flatnonzero(shows), np.flatnonzero(~shows)):
    if len(stratum):
      keep = max(1, int(round(label_fraction * len(stratum))))
      chosen += list(rng.choice(stratum, size=keep, replace=False))
  return [every[i] for i in sorted(chosen)]


def oversample_foreground(dataset, records, *, axis, fraction):
  """`records` with the slices that show a foreground class repeated until they are about
  `fraction` of the list (nnU-Net's foreground oversampling, 1/3 there): a structure on a few
  slices would otherwise be seen too rarely to be learnt. The labelled slices stay the same."""
  if fraction <= 0:
    return list(records)
  shows = slices_showing_structure(dataset, records, axis=axis)
  positive, negative = sum(shows), len(records) - sum(shows)
  if positive == 0 or negative == 0 or positive / len(records) >= fraction:
    return list(records)
  repeat = max(1, int(round(fraction * negative / ((1 - fraction) * positive))))
  return [r for r, s in zip(records, shows) for _ in range(repeat if s else 1)]


class ReadLabelledSlice(grain.transforms.RandomMap):
  """Record -> {"image": N x N x 1, "labels": N x N}, one random rotation for both when `rotate`.

  With `label_kind="box"` the label map stays here: the record carries only "boxes" (M x 5,
  `label_boxes` of the rotated labels, i.e. boxes drawn on the slice as the model sees it).
  """

  def __init__(self, dataset, *, axis, size, rotate, label_kind="mask", max_boxes=4):
    self.dataset, self.axis, self.size, self.rotate = dataset, axis, size, rotate
    self.label_kind, self.max_boxes = label_kind, max_boxes
    self._labels = {}

  def labels(self, volume_id):
    if volume_id not in self._labels:  # opened lazily: per worker process
      self._labels[volume_id] = open_labels(self.dataset, volume_id)
    return self._labels[volume_id]

  def random_map(self, element, rng):
    volume_id, index = int(element["volume"]), int(element["index"])
    volume = self.dataset.volumes[volume_id]
    (window, *_) = fov.slice_windows(volume.shape, self.dataset.fovs[volume.name], self.axis, index)
    angle = rng.uniform(0.0, 360.0) if self.rotate else 0.0
    image = slices.model_input(volume.slice(self.axis, index), self.dataset.ranges[volume.name], self.size, angle, window)
    labels = model_labels(self.labels(volume_id).slice(self.axis, index), self.size, angle, window)
    if self.label_kind == "box":
      return {"image": image, "boxes": label_boxes(labels, self.max_boxes), "volume": np.int32(volume_id)}
    return {"image": image, "labels": labels, "volume": np.int32(volume_id)}


def reader(dataset, data_config, *, rotate):
  """The ReadLabelledSlice of a segmentation config's data section."""
  return ReadLabelledSlice(
    dataset,
    axis=data_config.segment_axis,
    size=data_config.slice_size,
    rotate=rotate,
    label_kind=data_config.label_kind,
    max_boxes=data_config.max_boxes,
  )


def make_loader(dataset, data_config, records, *, seed, batch_size, shard_options=None):
  """Infinite loader of batches of labelled slices (this process's share)."""
  read = reader(dataset, data_config, rotate=data_config.rotate)
  operations = [read, grain.transforms.Batch(batch_size, drop_remainder=True)]
  return pipeline.shuffled_loader(LabelledSlices(records), operations, data_config, seed=seed, shard_options=shard_options)


def predict_volume(volume, volume_fov, value_range, *, predict_fn, params, axis, size, batch_size):
  """uint8 label volume, slice by slice along `axis`: argmax of the logits resampled back to the slice's
  (first) field-of-view window; voxels outside every window are background."""
  labels = np.zeros(volume.shape, np.uint8)
  first, stop = fov.valid_indices(volume.shape, volume_fov, axis)
  pending = []

  def flush():
    images = np.stack([p[2] for p in pending] + [pending[0][2]] * (batch_size - len(pending)))
    for (index, window, _), logits_NxNxK in zip(pending, np.asarray(predict_fn(params, images))):
      side = max(window[1] - window[0], window[3] - window[2])
      classes = resample_labels(np.argmax(logits_NxNxK, -1).astype(np.float32), side, 0.0)  # back to the window's voxels
      h, w = window[1] - window[0], window[3] - window[2]
      r0, c0 = (side - h) // 2, (side - w) // 2  # pad_to_square centred the window
      target = [slice(None)] * 3
      target[axis] = index
      plane = labels[tuple(target)]
      plane[window[0] : window[1], window[2] : window[3]] = classes[r0 : r0 + h, c0 : c0 + w].round().astype(np.uint8)
    pending.clear()

  for index in range(first, stop):
    (window, *_) = fov.slice_windows(volume.shape, volume_fov, axis, index)
    pending.append((index, window, slices.model_input(volume.slice(axis, index), value_range, size, 0.0, window)))
    if len(pending) == batch_size:
      flush()
  if pending:
    flush()
  return labels


def iou(pred_DxHxW, truth_DxHxW, label=1):
  """Intersection over union of one class, over the whole volume (3D)."""
  p, t = pred_DxHxW == label, truth_DxHxW == label
  union = np.logical_or(p, t).sum()
  return float(np.logical_and(p, t).sum() / union) if union else 1.0
