"""Segmentation with a pre-trained encoder (paper 3.2): the encoder from a pretext workdir, the evaluation.

- `pretrained_encoder(init, encoder_config)`: the encoder parameters of a pre-training workdir's
  selected checkpoint (sorting, rotation, SimCLR, MoCo v3: every pretext model keeps its ResNet
  under params["encoder"]), checked against the segmentation model's encoder config.
- `evaluate_workdir(config, workdir)`: every test volume (annotated, never fine-tuned on) is
  predicted slice by slice along `data.segment_axis`, stitched into a label volume written as
  zarr into a new results folder (ssl_ct/results.py) with overlays, and scored by the 3D IoU of
  each foreground class; report.md and metrics.json list them.
"""

import os

import jax
import numpy as np
import tqdm

from ssl_ct import compilation_cache, outputs, plots, results, run_localization, tasks
from ssl_ct.data import labeled, prepare, zarr_writer
from ssl_ct.errors import InputError

_ENCODER_KEYS = ("name", "width", "small_stem")  # what the encoder's parameters depend on
FOLDER = "segmentation"  # results folders: <workdir>/segmentation/<run>/


def pretrained_encoder(init, encoder_config):
  """params["encoder"] of the pre-training workdir `init` (host arrays): its latest checkpoint's, or
  its best validation step's when that run kept one (`train.keep_best`, the sorting configs)."""
  pre_config = results.read_config(init, what=f"init={init}", fix="give the workdir of a pre-training run")
  for key in _ENCODER_KEYS:
    if pre_config.model[key] != encoder_config[key]:
      raise InputError(
        f"init={init}: its encoder has model.{key}={pre_config.model[key]!r}, this model {encoder_config[key]!r}; "
        f"set --config.model.{key}={pre_config.model[key]!r} or pre-train the same encoder"
      )
  task = tasks.get_task(pre_config)
  params = run_localization.trained_params(pre_config, init, task.make_model(), task.example_batch(1))
  return params["encoder"]


def load_encoder(params, encoder):
  """`params` with its encoder replaced by `encoder`, by name; pretext-only layers (a sorting head) dropped."""
  target = params["encoder"]
  missing = sorted(set(target) - set(encoder))
  if missing:
    raise InputError(f"the pre-trained encoder lacks layers {', '.join(missing[:4])}; pre-train the same encoder")
  loaded = {k: encoder[k] for k in target}
  if jax.tree.map(np.shape, target) != jax.tree.map(np.shape, loaded):
    raise InputError("the pre-trained encoder's parameter shapes differ from this model's; pre-train the same encoder")
  return {**params, "encoder": loaded}


def make_predict_fn(model):
  @jax.jit
  def predict(params, images_BxNxNx1):
    logits, _ = model.apply({"params": params}, {"image": images_BxNxNx1}, deterministic=True)
    return logits

  return predict


def evaluate_workdir(config, workdir, *, dataset=None, params=None):
  """Predicts and scores every test volume into a new results folder; returns {"iou": mean, "per_volume": ...}."""
  compilation_cache.enable()
  dataset = dataset or prepare.load_dataset(config.data, workdir)
  task = tasks.get_task(config)
  model = task.make_model()
  if params is None:
    params = run_localization.trained_params(config, workdir, model, task.example_batch(1))
  _, _, test_ids = task.split(dataset)
  predict = make_predict_fn(model)
  data = config.data
  per_volume = {}
  with results.new_run(workdir, FOLDER) as out_dir:
    outputs.write_text(os.path.join(out_dir, "config.json"), config.to_json_best_effort(indent=1, sort_keys=True))
    for vid in tqdm.tqdm(test_ids, desc="segment", unit="vol"):
      volume = dataset.volumes[vid]
      name = volume.name
      pred = labeled.predict_volume(
        volume,
        dataset.fovs[name],
        dataset.ranges[name],
        predict_fn=predict,
        params=params,
        axis=data.segment_axis,
        size=data.slice_size,
        batch_size=data.batch_size,
      )
      true = labeled.open_labels(dataset, vid).read()
      per_volume[name] = {f"iou_{k}": labeled.iou(pred, true, int(k)) for k in _foreground(dataset, name)}
      zarr_writer.write_zarr3(
        pred, os.path.join(out_dir, f"{name}_labels.zarr"), attributes={"ssl_ct": {"predicted_from": volume.where}}
      )
      _overlay(volume, pred, true, dataset.ranges[name], data.segment_axis, os.path.join(out_dir, "overlays", f"{name}.png"))
    summary = (
      {k: float(np.mean([m[k] for m in per_volume.values()])) for k in next(iter(per_volume.values()))} if per_volume else {}
    )
    result = {
      "summary": summary,
      "per_volume": per_volume,
      "pretext_init": config.init or "none",
      "label_fraction": data.label_fraction,
      "label_kind": data.label_kind,  # what fine-tuning saw; the test volumes are scored on their label maps
    }
    outputs.write_json(os.path.join(out_dir, "metrics.json"), result)
    outputs.write_text(os.path.join(out_dir, "report.md"), _report(config, result))
  return result


def _foreground(dataset, name):
  names = dataset.truth[name].get("label_names", {"0": "background", "1": "foreground"})
  return sorted((k for k in names if k != "0"), key=int)


def _overlay(volume, pred, true, value_range, axis, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  counts = np.sum(true > 0, axis=tuple(a for a in range(3) if a != axis))
  index = int(np.argmax(counts))  # the slice with the most labelled voxels
  plots.plot_label_overlay(volume.slice(axis, index), pred.take(index, axis=axis), true.take(index, axis=axis), value_range, path)


def _report(config, result):
  lines = [f"# Segmentation report: {config.model.decoder} over {config.model.name}", ""]
  lines += [
    f"Encoder initialised from: {result['pretext_init']}; labels: {100 * result['label_fraction']:g}% of the fine-tuning slices"
    + (", boxes of the structure only (scored on the test volumes' label maps)." if result["label_kind"] == "box" else "."),
    "",
  ]
  lines += ["| volume | " + " | ".join(result["summary"]) + " |", "|---|" + "---|" * len(result["summary"])]
  for name, m in result["per_volume"].items():
    lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in m.values()) + " |")
  lines.append("| **mean** | " + " | ".join(f"{v:.4f}" for v in result["summary"].values()) + " |")
  return "\n".join(lines) + "\n"
