"""Localization of a dataset: the trained model's localizer and the threshold baseline on every volume, into a results folder."""

import functools
import glob
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import logging
from jax.experimental import multihost_utils

from ssl_ct import (
  baseline,
  checkpoint,
  compilation_cache,
  crop,
  evaluate,
  metric_writer,
  outputs,
  plots,
  refine,
  report,
  results,
  tasks,
)
from ssl_ct.data import prepare, truth
from ssl_ct.errors import InputError

_STYLES = {
  "predicted": {"edgecolor": "tab:orange", "label": "predicted"},
  "truth": {"edgecolor": "lime", "linestyle": "--", "label": "truth"},
  "baseline": {"edgecolor": "tab:cyan", "linestyle": ":", "label": "threshold baseline"},
}


def localize_dataset(
  dataset, localizer, out_dir, *, plot=True, crop_margin=None, measured_margin=None, pretext=None, distrust="", share=None
):
  """Runs `localizer` and the baseline on every volume; returns the summary (or None without truth).

  `localizer`: localize(volume, fov, value_range) -> (box or None, diagnostics) on the analysed
  grid, and save(out_dir, name, diagnostics, ...) for its own figures and arrays.
  `crop_margin`: the margin the boxes are to be cropped with, and `pretext` the validation
  metrics of the checkpoint, both recorded in boxes.json and the report; `measured_margin`: the
  margin (fraction of the side) on the faces the localizer measured (ssl_ct/refine.py), recorded
  per volume in boxes.json's `face_margins` (input voxels), which crops use. `distrust`: why the
  model's boxes cannot be trusted ("" when they can): then every box is null (the whole volume
  is kept by a crop) and the model's own boxes are recorded beside them, not cropped with.
  `share`: (process index, process count, barrier) of a multi-process job: each process
  localizes every count-th volume and saves its figures into `out_dir` (a shared filesystem);
  process 0 merges the results and writes the report, the others return None.
  """
  index, count, barrier = share or (0, 1, None)
  os.makedirs(out_dir, exist_ok=True)  # sub-folders appear with the figures
  mine = dataset.volumes[index::count]
  margins = (crop_margin, measured_margin)
  records = {
    v.name: _localize_volume(dataset, localizer, v, out_dir, plot=plot, distrust=distrust, margins=margins)
    for v in tqdm.tqdm(mine, desc="localize" if count == 1 else f"localize (process {index} of {count})", unit="vol")
  }
  if count > 1:
    parts = os.path.join(out_dir, ".parts")
    os.makedirs(parts, exist_ok=True)
    outputs.write_json(os.path.join(parts, f"{index}.json"), records)
    barrier("ssl_ct localization parts written")
    if index != 0:
      return None
    for other in range(1, count):
      with open(os.path.join(parts, f"{other}.json")) as f:
        records |= json.load(f)
    shutil.rmtree(parts)
  names = [v.name for v in dataset.volumes]
  field = lambda key: {n: records[n][key] for n in names}  # noqa: E731
  boxes, model_boxes = field("box"), field("model_box")
  complete = all("metrics" in records[n] for n in names)
  notes = (
    [f"**The model's boxes are not used: {distrust}.** Every box is null, so a crop keeps whole volumes."] if distrust else []
  )
  refinements = {n: records[n].get("refinement") for n in names if records[n].get("refinement") is not None}
  trims = {n: records[n]["trim"] for n in names if records[n].get("trim") is not None}
  if trims:
    moved = sum(bool(t) for t in trims.values())
    notes.append(
      f"Box trimming: {moved} of {len(trims)} boxes cut back to the certainty's steady core and the threshold box"
      " where the certainty took in more (packing, a holder); each volume's note is in boxes.json (`trims`)."
    )
  blind = {n: records[n]["blind_axes"] for n in names if records[n].get("blind_axes")}
  if blind:
    notes.append(
      f"**{len(blind)} of {len(names)} boxes kept an axis whole** for want of evidence along it (the pretext model"
      " cannot read slices cut that way; check its accuracy per axis): " + "; ".join(f"{n}: {t}" for n, t in blind.items()) + "."
    )
  if refinements:
    notes.append(_refinement_note(refinements))
  return report.write_report(
    out_dir,
    method_name=localizer.method_name,
    boxes=boxes,
    baseline_boxes=field("baseline_box"),
    outcomes=field("outcome"),
    pretext=pretext,
    metrics=field("metrics") if complete else None,
    baseline_metrics=field("baseline_metrics") if complete else None,
    shapes={n: dataset.input_shape(n) for n in names},
    crop_margin=crop_margin,
    notes=notes,
    distrust=distrust,
    model_boxes=model_boxes if distrust else None,
    voxel_sizes={n: dataset.voxel_size(n) for n in names},
    refinements=refinements or None,
    trims=trims or None,
    blind_axes=blind or None,
    face_margins={n: records[n]["face_margins"] for n in names if "face_margins" in records[n]} or None,
  )


def _refinement_note(refinements):
  """One line on what the box refinement did (ssl_ct/refine.py); per volume in boxes.json."""
  count = lambda word: sum(note.startswith(word) for note in refinements.values())  # noqa: E731
  grown, null, stayed = count("grown"), count("no sample"), count("not refined")
  missed = sum(refine.MISSED in note for note in refinements.values())
  fitted = sum(refine.FITTED in note for note in refinements.values())
  faint = sum(refine.FAINT in note for note in refinements.values())
  seeded = sum(refine.SEEDED in note for note in refinements.values())
  past = sum(refine.SEED_PAST in note for note in refinements.values())
  across = sum(refine.ACROSS in note for note in refinements.values())
  grown -= past  # their notes start "grown": to the threshold box's extent, not to faint parts
  text = (
    f"Box refinement: {grown} of {len(refinements)} boxes grown to faint parts of the sample, {null} found to hold none"
    f" (null), {stayed} left as found for want of empty slices"
    + (f", {fitted} with faces moved in to where the sample ends" if fitted else "")
    + (f", {faint} too faint for their faces to be measured (cropped with the uniform margin)" if faint else "")
    + (f", {seeded} refined from the threshold box's extent along the axis (the box left no empty slices)" if seeded else "")
    + (
      f", {past} grown to the threshold box's extent along the axis instead of null (it reached into the slices taken for empty)"
      if past
      else ""
    )
    + (
      f", {across} with faces across the axis measured by growths along the other two (it had no empty slices)" if across else ""
    )
    + "; each volume's note is in boxes.json (`refinements`)."
  )
  if missed:
    text += (
      f" **{missed} of the model's boxes missed much of the foreground** (the coverage rule grew them to it:"
      " the pretext model is weak on these volumes; check those boxes)."
    )
  return text


def _localize_volume(dataset, localizer, volume, out_dir, *, plot, distrust, margins=(None, None)):
  """One volume's boxes (input voxels), outcome and, with ground truth, metrics; saves its figures."""
  name, volume_fov, value_range = volume.name, dataset.fovs[volume.name], dataset.ranges[volume.name]
  factor, shape = dataset.factor(name), dataset.input_shape(name)
  grid_box, diagnostics = localizer.localize(volume, volume_fov, value_range)  # on the analysed (maybe downscaled) grid
  # The threshold box reads the whole volume: a localizer that needed it already has it.
  grid_baseline = diagnostics["threshold_box"] if "threshold_box" in diagnostics else baseline.threshold_box(volume, volume_fov)
  model_box = baseline.scale_box(grid_box, factor, shape)
  record = {
    "box": None if distrust else model_box,
    "model_box": model_box,
    "baseline_box": baseline.scale_box(grid_baseline, factor, shape),
    "outcome": diagnostics["outcome"],
    "refinement": diagnostics.get("refinement"),  # None: the localizer does not refine
    "trim": diagnostics.get("trim"),  # None: the localizer does not trim
    "blind_axes": diagnostics.get("blind_axes"),  # None: the localizer has no per-axis evidence
  }
  pads = crop.measured_pads(
    diagnostics.get("measured_faces"), shape, *margins, factor=factor, tails=diagnostics.get("face_tails")
  )
  if pads and record["box"] is not None:  # per-face crop margins, input voxels
    record["face_margins"] = pads
  truth_box = dataset.truth.get(name, {}).get("box")
  if truth_box is not None:
    mask = truth.read_mask(dataset.root, dataset.truth[name])
    record["metrics"] = evaluate.box_metrics(record["box"], truth_box, shape, mask)
    record["baseline_metrics"] = evaluate.box_metrics(record["baseline_box"], truth_box, shape, mask)
  if plot:
    grid_truth = baseline.shrink_box(truth_box, factor)
    shown = [(grid_box, _STYLES["predicted"]), (grid_truth, _STYLES["truth"]), (grid_baseline, _STYLES["baseline"])]
    localizer.save(out_dir, name, diagnostics, volume=volume, value_range=value_range, shown=shown)
    os.makedirs(os.path.join(out_dir, "overlays"), exist_ok=True)
    plots.plot_box_overlay(volume, shown, os.path.join(out_dir, "overlays", f"{name}.png"), value_range)
  return record


def _selected_step(config, workdir):
  """The best validation step when the run kept one (train.keep_best), else None: the latest checkpoint."""
  return checkpoint.best_step(workdir) if config.get("train", {}).get("keep_best", False) else None


def trained_params(config, workdir, model, example_batch):
  """The model parameters the workdir's run selected (host arrays): the best validation step's with
  `train.keep_best`, else the latest checkpoint's; InputError when there is none."""
  zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), example_batch)
  abstract = jax.eval_shape(lambda key: model.init({"params": key}, zeros, deterministic=True)["params"], jax.random.key(0))
  best = _selected_step(config, workdir)
  params, step = checkpoint.restore_params(workdir, abstract, folder=checkpoint.BEST if best is not None else "checkpoints")
  if params is None:
    raise InputError(f"no checkpoint in {workdir}/checkpoints; train first (--mode=train or --mode=all)")
  logging.info("using the %s of step %d", "best validation checkpoint" if best is not None else "checkpoint", step)
  return params


def localize_workdir(config, workdir, *, dataset=None, params=None):
  """Localizes every volume of `config.data` into a new results folder of the workdir (results.py).

  `params`: the final training state's parameters (host arrays), which spare a checkpoint read;
  by default, and whenever the run kept a best validation step (`train.keep_best`), those of
  the selected checkpoint (trained_params), whose validation the report and trust gate use;
  `config.localize.model` (a workdir or an exported localizer folder) names another model.
  Returns the summary against ground truth (None without it).
  """
  compilation_cache.enable()
  dataset = dataset or prepare.load_dataset(config.data, workdir)
  task = tasks.get_task(config)
  model = task.make_model()
  model_dir = config.localize.get("model", "")
  if model_dir:  # a localizer trained elsewhere: a workdir or an exported folder (ssl_ct.api)
    from ssl_ct import api

    _, params, pretext = api.load_trained(model_dir)
  else:
    if params is None or _selected_step(config, workdir) is not None:  # a kept best step, not the final state
      params = trained_params(config, workdir, model, task.example_batch(1))
    pretext = checkpoint_validation(config, workdir)
  localizer = task.make_localizer(model, params)
  margin = config.crop.margin if "crop" in config else None
  measured = config.crop.get("measured_margin") if "crop" in config else None  # configs before the key: None
  distrust = task.distrust(pretext)
  run = functools.partial(
    localize_dataset, dataset, localizer, crop_margin=margin, measured_margin=measured, pretext=pretext, distrust=distrust
  )
  if jax.process_count() > 1:  # every process its share of the volumes, into process 0's results folder
    share = (jax.process_index(), jax.process_count(), multihost_utils.sync_global_devices)
    if jax.process_index() != 0:
      return run(_broadcast_text(""), share=share)
  else:
    share = None
  with results.new_run(workdir) as out_dir:
    if share:
      _broadcast_text(out_dir)
    outputs.write_text(os.path.join(out_dir, "config.json"), config.to_json_best_effort(indent=1, sort_keys=True))
    summary = run(out_dir, share=share)
    steps = [r["step"] for r in metric_writer.read_metrics(workdir)]
    figures = {
      f"localization/{os.path.basename(os.path.dirname(p))}/{os.path.basename(p)[:-4]}": p
      for p in glob.glob(os.path.join(out_dir, "*", "*.png"))
    }
    metric_writer.write_figures(workdir, steps[-1] if steps else 0, figures)
    return summary


def _broadcast_text(text, size=4096):
  """Process 0's `text` on every process of the job (a path: at most `size` bytes of UTF-8)."""
  data = np.zeros(size, np.uint8)
  encoded = text.encode()[:size]
  data[: len(encoded)] = np.frombuffer(encoded, np.uint8)
  return bytes(np.asarray(multihost_utils.broadcast_one_to_all(data))).rstrip(b"\0").decode()


def checkpoint_validation(config, workdir):
  """The validation metrics (val_*, and its "step") of the checkpoint trained_params reads: the best
  step's with `train.keep_best`, else the latest logged; {} when none were logged."""
  best = _selected_step(config, workdir)
  for record in reversed(metric_writer.read_metrics(workdir)):
    found = {k: v for k, v in record.items() if k.startswith("val_")}
    if found and (best is None or record["step"] == best):
      return {**found, "step": record["step"]}
  return {}


def load_saved(workdir, folder):
  """(run config, truth entries, [(name, saved arrays, mask)]) of what the latest localization run saved in <folder>.

  For analysis scripts: needs the ground-truth masks of the run's data (synthetic sets have them).
  """
  run = results.latest(workdir)
  config = results.read_config(run)
  root = prepare.data_root(config.data, workdir, progress=False)
  known = truth.read_truth(root)
  saved = []
  for npz in sorted(glob.glob(os.path.join(run, folder, "*.npz"))):
    name = os.path.basename(npz)[:-4]
    if name in known:  # volumes without a reference are localized, not scored
      saved.append((name, np.load(npz), truth.read_mask(root, known[name])))
  return config, known, saved
