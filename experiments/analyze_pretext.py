r"""Where the rotation pretext task was learned: validation accuracy on pairs cut through the sample
against pairs cut beside it (issue #11: why does the rotation task seem to learn slowly on real scans?).

  python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=W      # trains, localizes
  python experiments/real_data_benchmark.py --workdir=R --tasks=rotation           # the real scans
  python experiments/analyze_pretext.py --workdirs=W,R/rotation

The validation pairs (`train.validation_pairs`, the same fixed draws as training's evaluation)
are scored with the workdir's selected checkpoint and split by their reference slice: inside the
sample's ground-truth box along the slice's axis ("sample"), or outside it ("beside"). A pair
beside the sample shows the model only medium, holder, packing or noise, so on a volume whose
background gives the rotation nothing away it stays at chance (1 / angle classes) however long
the model trains: the overall accuracy is then bounded by `share * 1 + (1 - share) * chance`,
with `share` the fraction of pairs through the sample, and a low overall figure can hide a task
learned where it matters. Prints one table row per workdir and axis, and the validation accuracy
over training steps (`W/metrics.jsonl`). Workdirs without ground truth are refused.
"""

import argparse
import os

import jax
import numpy as np

from ssl_ct import baseline, metric_writer, results, run_localization, tasks
from ssl_ct.data import pipeline, prepare


def pair_outcomes(config, workdir):
  """Per validation pair: (axis, reference slice through the sample's box, prediction correct)."""
  dataset = prepare.load_dataset(config.data, workdir, progress=False)
  if not dataset.truth:
    raise SystemExit(f"error: --workdirs={workdir}: its data has no truth.json; use a synthetic or the real benchmark's workdir")
  task = tasks.get_task(config)
  model = task.make_model()
  params = run_localization.trained_params(config, workdir, model, task.example_batch(1))
  predict = jax.jit(lambda batch: model.apply({"params": params}, batch)[0].argmax(-1))
  data, train = config.data, config.train
  draws = pipeline.rotation_validation_draws(dataset, config.seed, train.validation_pairs, data.batch_size)
  batches = pipeline.rotation_validation_batches(
    dataset, data, seed=config.seed, num_pairs=train.validation_pairs, batch_size=data.batch_size
  )
  correct = np.concatenate([np.asarray(predict(b)) == b["angle"] for b in batches])
  rows = []
  for (element, _), right in zip(draws, correct):
    volume = dataset.volumes[element["volume"]]
    entry, axis = dataset.truth.get(volume.name, {}), element["axis"]
    if entry.get("box") is None:
      continue  # no reference (or no sample) for this volume: neither side of a box
    box = baseline.shrink_box(entry["box"], dataset.factors[volume.name])  # input voxels -> the analysed grid
    rows.append((axis, box["start"][axis] <= element["index"] < box["stop"][axis], bool(right)))
  return rows


def _accuracy(rows):
  return (f"{np.mean([r[2] for r in rows]):.3f}", len(rows)) if rows else ("-", 0)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdirs", required=True, help="comma-separated rotation-loss workdirs with ground truth")
  args = parser.parse_args()
  print("| workdir | axis | all pairs | through the sample (pairs) | beside it (pairs) | bound if beside = chance | chance |")
  print("|---|---|---|---|---|---|---|")
  for workdir in args.workdirs.split(","):
    # Workdirs of ssl_ct.main hold their config; the real benchmark's, only their localization runs'.
    has_config = os.path.exists(os.path.join(workdir, "config.json"))
    config = results.read_config(workdir if has_config else results.latest(workdir))
    if config.task != "rotation":
      raise SystemExit(f"error: --workdirs={workdir}: a {config.task} workdir; this analysis is for the rotation loss")
    chance = 1 / len(config.data.angles_deg)
    rows = pair_outcomes(config, workdir)
    for axis, name in ((None, "all"), (0, "z"), (1, "y"), (2, "x")):
      on_axis = [r for r in rows if axis is None or r[0] == axis]
      inside = [r for r in on_axis if r[1]]
      share = len(inside) / max(len(on_axis), 1)
      cells = [_accuracy(on_axis), _accuracy(inside), _accuracy([r for r in on_axis if not r[1]])]
      print(
        f"| {os.path.basename(os.path.normpath(workdir))} | {name} | {cells[0][0]} ({cells[0][1]}) | {cells[1][0]} ({cells[1][1]}) "
        f"| {cells[2][0]} ({cells[2][1]}) | {share + (1 - share) * chance:.3f} | {chance:.3f} |"
      )
    curve = [(r["step"], r["val_rot_acc"]) for r in metric_writer.read_metrics(workdir) if "val_rot_acc" in r]
    print(f"  {workdir}: validation accuracy by step: " + ", ".join(f"{s}: {a:.3f}" for s, a in curve))


if __name__ == "__main__":
  main()
