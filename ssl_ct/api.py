"""A trained localizer as a Python object: load it from a workdir or an exported folder, localize volumes.

  import ssl_ct
  loc = ssl_ct.load_localizer("W")                 # a workdir (its selected checkpoint) or `--mode=export`'s folder
  result = loc.localize("scan.h5:/exchange/data")  # a path, tensorstore spec, numpy array or Volume
  result.box, result.outcome                       # input voxels, half-open; "sample box" | "fills the field" | "no sample"
  ssl_ct.write_crop("scan.h5:/exchange/data", result.box, "scan_cropped.zarr", margin=loc.crop_margin,
                   face_margins=result.face_margins)   # less margin on the faces the localizer measured (None: uniform)

The volume is analysed as `ssl_ct.main` does (downscaled to `data.downscale_to`, a chunked copy
of slow formats in a temporary folder, the field of view and intensity range estimated), so a
box from here equals the one `--mode=localize` writes for the same volume and checkpoint.
"""

import dataclasses
import json
import os
import tempfile

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from ssl_ct import baseline, compilation_cache, outputs, run_localization, tasks
from ssl_ct import crop as crop_lib
from ssl_ct.data import formats, fov, intensity, prepare, truth, voxel_size
from ssl_ct.data.volume import ArrayVolume, Volume
from ssl_ct.errors import InputError

EXPORT_FILE = "localizer.json"
PARAMS_FILE = "params.npz"
EXPORT_VERSION = 1


@dataclasses.dataclass
class Result:
  """One volume's localization, in its input voxels."""

  name: str
  shape: tuple
  box: dict | None  # {"start": [z, y, x], "stop": [z, y, x]}, half-open; None keeps the whole volume
  outcome: str  # "sample box", "fills the field", "no sample"
  model_box: dict | None  # the model's own box (differs from `box` only when the model is not trusted)
  diagnostics: dict  # the localizer's arrays (certainty curves, variance grid, scores), on the analysed grid
  voxel_size_um: tuple | None = None  # (z, y, x) micrometres per voxel, where the file (or the caller) says it
  face_margins: list | None = None  # [[before, after] voxels] per axis for the crop (crop.face_pads), or None: uniform

  @property
  def box_um(self):
    """The box in micrometres from the volume's first voxel, {"start", "stop"}; None without a box or voxel size."""
    if self.box is None or not self.voxel_size_um:
      return None
    return {k: [float(i * v) for i, v in zip(self.box[k], self.voxel_size_um)] for k in ("start", "stop")}

  def crop_box(self, margin):
    """The box grown by `margin` (0.05 of each side, "40vox", "50um") on every face and clipped (the whole volume for None)."""
    return crop_lib.margin_box(self.box, self.shape, margin, self.voxel_size_um)


class Localizer:
  """A trained model with its config; localize() takes one volume at a time."""

  def __init__(self, config, params, *, pretext, source):
    if config.task not in tasks.LOCALIZING:
      raise InputError(f"{source}: a {config.task!r} run has no localizer; load a rotation or sorting workdir")
    compilation_cache.enable()
    self.config, self.source, self.pretext = config, source, pretext
    self.task = tasks.get_task(config)
    self.model = self.task.make_model()
    self._localizer = self.task.make_localizer(self.model, params)
    self.params = params
    self.distrust = self.task.distrust(pretext)

  @property
  def method(self):
    return self._localizer.method_name

  @property
  def crop_margin(self):
    """The margin this method's boxes are cropped with (a fraction of each side)."""
    return self.config.crop.margin

  def localize(self, volume, name=None, *, cache_dir=None, voxel_size_um=None):
    """Result for one volume (a path, spec, array or Volume); analysis copies go to `cache_dir` (default: a temporary
    folder); `voxel_size_um` (one number or z, y, x) replaces what the file records."""
    volume = as_volume(volume, name, fill_missing=self.config.data.fill_missing, voxel_size_um=voxel_size_um)
    with tempfile.TemporaryDirectory(prefix="ssl_ct_") as scratch:
      analysed, factor = prepare.downscaled(
        volume, self.config.data.downscale_to, cache_dir or scratch, progress=False, analysis_copy=self.config.data.analysis_copy
      )
      volume_fov = fov.estimate_fov(analysed)
      data = self.config.data
      value_range = intensity.intensity_range(
        analysed, fov=volume_fov, low_percentile=data.low_percentile, high_percentile=data.high_percentile
      )
      grid_box, diagnostics = self._localizer.localize(analysed, volume_fov, value_range)
    model_box = baseline.scale_box(grid_box, factor, volume.shape)
    box = None if self.distrust else model_box
    measured, crop_config = diagnostics.get("measured_faces"), self.config.crop
    margins = (crop_config.margin, crop_config.get("measured_margin"))
    tails = diagnostics.get("face_tails")
    pads = crop_lib.measured_pads(measured, volume.shape, *margins, factor, tails) if box else None
    return Result(volume.name, volume.shape, box, diagnostics["outcome"], model_box, diagnostics, volume.voxel_size_um, pads)


def as_volume(volume, name=None, *, fill_missing=False, voxel_size_um=None):
  """A Volume from a path, tensorstore spec, numpy array or Volume; `voxel_size_um` replaces the file's."""
  if isinstance(volume, Volume):
    opened = volume
  elif isinstance(volume, np.ndarray):
    opened = ArrayVolume(volume, name=name or "array")
  else:
    opened = formats.open_volume(volume, name=name, fill_missing=fill_missing)
  if voxel_size_um is not None:
    try:
      opened.voxel_size_um = voxel_size.checked(voxel_size_um, "voxel_size_um")
    except ValueError as e:
      raise InputError(f"{e}; give one or three micrometres (z, y, x)") from e
  return opened


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise InputError(f"{path} cannot be read ({e}); export the localizer again") from e


def load_localizer(path, config=None):
  """The localizer of a workdir (its config.json, or `config`, and selected checkpoint) or of an exported folder."""
  config, params, pretext = load_trained(path, config)
  return Localizer(config, params, pretext=pretext, source=os.fspath(path))


def load_trained(path, config=None):
  """(config, host parameters, pretext validation metrics) of a workdir or an exported localizer folder."""
  path = os.fspath(path)
  if os.path.exists(os.path.join(path, EXPORT_FILE)):
    meta = _read_json(os.path.join(path, EXPORT_FILE))
    if meta.get("version") != EXPORT_VERSION:
      raise InputError(
        f"{path}: exported localizer version {meta.get('version')} is not {EXPORT_VERSION}; export it again with this ssl_ct"
      )
    config = ml_collections.ConfigDict(_read_json(os.path.join(path, "config.json")))
    try:
      with np.load(os.path.join(path, PARAMS_FILE)) as f:
        params = traverse_util.unflatten_dict({tuple(k.split("/")): f[k] for k in f.files})
    except (OSError, ValueError) as e:
      raise InputError(f"{path}/{PARAMS_FILE} cannot be read ({e}); export the localizer again") from e
    return config, params, meta["pretext"]
  if config is not None or os.path.exists(os.path.join(path, "config.json")):
    config = config or ml_collections.ConfigDict(_read_json(os.path.join(path, "config.json")))
    if config.task not in tasks.LOCALIZING:
      raise InputError(f"{path}: a {config.task!r} run has no localizer; load a rotation or sorting workdir")
    task = tasks.get_task(config)
    params = run_localization.trained_params(config, path, task.make_model(), task.example_batch(1))
    return config, params, run_localization.checkpoint_validation(config, path)
  raise InputError(
    f"{path} is neither an ssl_ct workdir (config.json and checkpoints) nor an exported localizer ({EXPORT_FILE}); pass one"
  )


def export(localizer, out_dir, *, overwrite=False):
  """A self-contained localizer folder: parameters only (params.npz), the config, the pretext metrics, the crop margin."""
  flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, localizer.params), sep="/")
  meta = {
    outputs.MARKER: {"kind": "localizer"},
    "version": EXPORT_VERSION,
    "method": localizer.method,
    "crop_margin": localizer.crop_margin,
    "pretext": localizer.pretext,
    "distrust": localizer.distrust,
    "source": os.path.abspath(localizer.source),
  }
  with outputs.atomic_dir(out_dir, overwrite) as tmp:
    np.savez(os.path.join(tmp, PARAMS_FILE), **flat)
    outputs.write_text(os.path.join(tmp, "config.json"), localizer.config.to_json_best_effort(indent=1, sort_keys=True))
    outputs.write_json(os.path.join(tmp, EXPORT_FILE), meta)
  return out_dir


def write_crop(
  volume, box, out_path, *, margin, overwrite=False, progress=False, name=None, voxel_size_um=None, levels=0, face_margins=None
):
  """Writes `volume` cut to `box` grown by `margin` (0.05 of each side, "40vox", "50um"; by `face_margins`, [[before,
  after] voxels] per axis, where given: a Result's) to a new OME-Zarr 0.5 image at `out_path` (voxel size, translation
  to the crop's origin, `levels` pyramid levels, 0 = auto)."""
  volume = as_volume(volume, name, voxel_size_um=voxel_size_um)
  if box is not None:
    truth.check_box(box, volume.shape, "box")
  try:
    crop_lib.parse_margin(margin)
  except ValueError as e:
    raise InputError(str(e)) from e
  inputs = [p for p in [formats.local_path(volume)] if p]
  outputs.check_apart([out_path], inputs, fix="write the crop somewhere outside the input")
  crop_lib.crop_volume(
    volume, box, out_path, margin=margin, overwrite=overwrite, progress=progress, levels=levels, pads=face_margins
  )
  return out_path
