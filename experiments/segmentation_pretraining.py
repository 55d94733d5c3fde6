r"""The paper's Table 1 as one command: segmentation IoU against the pre-training of the encoder.

  python experiments/segmentation_pretraining.py --workdir=W [--seeds=5] [--pretrain-steps=600] [--finetune-steps=300]
      [--methods=none,simclr,moco,sorting,rotation,box] [--fractions=0.01,1.0] [--decoder=deeplabv3plus] [--strong-augment]

On the synthetic medaka demo set (48 volumes of 192x64x64 with `visual_system` labels): the
segmentation task's seeded split keeps 15 annotated volumes (10 fine-tune, 5 test, never seen
in fine-tuning); every pretext method pre-trains the same encoder (ResNet-18 width 16) for the
same number of steps on the 33 others, without labels; then each initialisation (and random,
"none") fine-tunes the same DeepLabV3+ with the same budget and schedule at each label fraction,
once per seed (the seed changes the initialisation of what is not pre-trained and the data
order; the split and the labelled slices stay). Writes W/table1.md (median IoU of the visual
system over seeds, min-max, the per-seed difference to random init with a two-sided sign test),
W/table1.json and W/table1.png. Compute per method (images seen, wall time) is in the table.

Also measured, as a floor: an intensity threshold chosen on the fine-tuning volumes' labels
(IoU-maximizing percentile), applied to the test volumes. `--strong-augment` adds sorting and
SimCLR rows pre-trained with augment_strength 2 (the paper: it helps sorting, hurts SimCLR).
"box" is the paper's stated next step: random init fine-tuned on the same labelled slices, but
from the boxes of the structure's regions only (`segment_medaka.py:boxes`, the box tightness
prior), scored against the full label maps of the test volumes like every other row.
Nothing in the study is tuned towards a winner: every setting is the demo configs'.
"""

import argparse
import json
import math
import os
import time

import numpy as np
from absl import logging

from ssl_ct import outputs, segment, tasks, train
from ssl_ct.configs import contrastive_medaka, rotation_xenopus, segment_medaka, sorting_medaka
from ssl_ct.data import labeled, prepare

METHODS = ("none", "simclr", "moco", "sorting", "rotation", "box")
NAMES = {"box": "box labels only (random init)"}  # rows of table1.md whose method name says too little


def _pretext_config(method, paths, steps, cache_dir, strength, size):
  """The `size` (demo | tiny) config of a pretext method on the unlabelled volumes, with the shared encoder."""
  if method in ("simclr", "moco"):
    config = contrastive_medaka.get_config(f"method={method},{size}")
  elif method == "sorting":
    config = sorting_medaka.get_config(size)
  else:
    config = rotation_xenopus.get_config(size)
  del config.data["path"]  # a str field in the configs: a list of volumes replaces it
  config.data.path = list(paths)
  config.data.cache_dir = cache_dir
  config.train.steps = steps
  config.train.checkpoint_every = steps
  if "keep_best" in config.train:
    config.train.keep_best = False  # equal budgets: every encoder is its method's last step
  if strength is not None:
    config.data.augment_strength = strength
  if method == "sorting":
    config.model.output_stride = 32  # the encoder of the study: output stride changes no parameter
  return config


def _images_per_step(config):
  per_item = {"rotation": 2, "contrastive": 2, "sorting": 1}[config.task]
  return config.data.batch_size * per_item * (2 if config.opt.ema_momentum else 1)


def sign_test(differences):
  """Two-sided sign test p-value of the nonzero differences."""
  nonzero = [d for d in differences if d != 0]
  n, k = len(nonzero), sum(d > 0 for d in nonzero)
  if n == 0:
    return 1.0
  tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
  return min(1.0, 2 * tail)


def threshold_floor(dataset, finetune, test):
  """Test IoU of the intensity percentile that maximizes the fine-tuning volumes' mean IoU."""
  # Down to structures of 0.01% of the voxels (the synthetic visual system is about 0.15%).
  percentiles = np.unique(np.concatenate([np.arange(80.0, 99.5, 0.5), 100.0 - np.geomspace(0.5, 0.01, 12)]))

  pairs = {vid: (dataset.volumes[vid].read(), labeled.open_labels(dataset, vid).read()) for vid in (*finetune, *test)}

  def ious(ids, q):
    return float(np.mean([labeled.iou(pairs[v][0] >= np.percentile(pairs[v][0], q), pairs[v][1]) for v in ids]))

  best = max(percentiles, key=lambda q: ious(finetune, q))
  return ious(test, best), float(best)


def _table(rows, fractions, compute, floor):
  lines = ["# Segmentation of the visual system: IoU against the encoder's pre-training", ""]
  lines += ["Median over seeds [min, max]; diff: median per-seed difference to random init, sign-test p.", ""]
  head = (
    "| pre-training | "
    + " | ".join(f"{100 * f:g}% labels" for f in fractions)
    + " | "
    + " | ".join(f"diff {100 * f:g}%" for f in fractions)
  )
  lines += [head + " | images seen | pre-training s |", "|---" * (2 + 2 * len(fractions) + 1) + "|"]
  for method, by_fraction in rows.items():
    cells, diffs = [], []
    for f in fractions:
      ious = by_fraction[f]
      cells.append(f"{np.median(ious):.3f} [{min(ious):.3f}, {max(ious):.3f}]")
      if method == "none":
        diffs.append("-")
      else:
        d = [a - b for a, b in zip(ious, rows["none"][f])]
        diffs.append(f"{np.median(d):+.3f} (p={sign_test(d):.2f})")
    images, seconds = compute.get(method, (0, 0.0))
    lines.append(
      f"| {NAMES.get(method, method)} | " + " | ".join(cells) + " | " + " | ".join(diffs) + f" | {images} | {seconds:.0f} |"
    )
  lines += [
    "",
    f"Intensity-threshold floor (percentile {floor[1]:g}, chosen on the fine-tuning volumes): test IoU {floor[0]:.3f}.",
  ]
  return "\n".join(lines) + "\n"


def _plot(rows, fractions, path):
  import matplotlib.pyplot as plt  # only for the figure

  fig, axes = plt.subplots(1, len(fractions), figsize=(5 * len(fractions), 3.6), squeeze=False)
  for ax, f in zip(axes[0], fractions):
    for i, by_fraction in enumerate(rows.values()):
      ax.scatter([i] * len(by_fraction[f]), by_fraction[f], alpha=0.7)
      ax.hlines(np.median(by_fraction[f]), i - 0.3, i + 0.3, colors="k")
    ax.set_xticks(range(len(rows)), list(rows), rotation=20)
    ax.set_title(f"{100 * f:g}% of the fine-tuning labels")
    ax.set_ylabel("test IoU, visual system")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--pretrain-steps", type=int, default=600)
  parser.add_argument("--finetune-steps", type=int, default=300)
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--fractions", default="0.01,1.0")
  parser.add_argument("--decoder", default="deeplabv3plus", choices=("deeplabv3plus", "unet"))
  parser.add_argument("--strong-augment", action="store_true", help="also sorting and SimCLR pre-trained with augment_strength 2")
  parser.add_argument("--tiny", action="store_true", help="test-sized configs (CI)")
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)
  fractions = [float(f) for f in args.fractions.split(",")]
  size = "tiny" if args.tiny else "demo"
  base = segment_medaka.get_config(f"decoder={args.decoder},{size}")
  base.data.cache_dir = os.path.join(args.workdir, "data")
  base.train.steps = args.finetune_steps
  base.train.checkpoint_every = args.finetune_steps
  dataset = prepare.load_dataset(base.data, os.path.join(args.workdir, "seg_data"))
  unlabelled, finetune, test = tasks.get_task(base).split(dataset)
  root = prepare.data_root(base.data, args.workdir)
  paths = [os.path.join(root, f"{dataset.volumes[i].name}.zarr") for i in unlabelled]
  print(f"{len(unlabelled)} unlabelled volumes pre-train, {len(finetune)} fine-tune, {len(test)} test")

  variants = [(m, None) for m in args.methods.split(",")]
  if args.strong_augment:
    variants += [("sorting", 2.0), ("simclr", 2.0)]
  inits, compute = {}, {}
  for method, strength in variants:
    label = method if strength is None else f"{method} (augment {strength:g})"
    if method in ("none", "box"):
      inits[label] = ""
      continue
    config = _pretext_config(method, paths, args.pretrain_steps, base.data.cache_dir, strength, size)
    workdir = os.path.join(args.workdir, "pretrain", label.replace(" ", "_").replace("(", "").replace(")", ""))
    timing = os.path.join(workdir, "pretrain_seconds.json")  # a rerun of the study reuses a finished pre-training
    if not os.path.exists(timing):
      outputs.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=1, sort_keys=True))
      start = time.perf_counter()
      train.train_and_evaluate(config, workdir)
      outputs.write_json(timing, {"seconds": time.perf_counter() - start})
    with open(timing) as f:
      compute[label] = (args.pretrain_steps * _images_per_step(config), json.load(f)["seconds"])
    inits[label] = workdir

  floor = threshold_floor(dataset, finetune, test)
  rows = {label: {f: [] for f in fractions} for label in inits}
  for seed in range(args.seeds):  # seed by seed: an interrupted study still has whole rows to show
    for f in fractions:
      for label, init in inits.items():
        boxes = ",boxes" if label == "box" else ""
        config = segment_medaka.get_config(f"decoder={args.decoder},{size}{boxes}")
        config.data.cache_dir = base.data.cache_dir
        config.train.steps, config.train.checkpoint_every = args.finetune_steps, args.finetune_steps
        config.data.label_fraction, config.init = f, init
        config.seed = seed  # initialisation and data order; data.split_seed keeps the split and the labelled slices
        workdir = os.path.join(
          args.workdir, "finetune", f"{label}_{f:g}_{seed}".replace(" ", "_").replace("(", "").replace(")", "")
        )
        state = train.train_and_evaluate(config, workdir, dataset=dataset)
        result = segment.evaluate_workdir(config, workdir, dataset=dataset, params=train.host_params(state.params))
        rows[label][f].append(result["summary"]["iou_1"])
        print(f"{label:24s} labels {100 * f:5g}%  seed {seed}: IoU {rows[label][f][-1]:.4f}")
    text = _table(rows, fractions, compute, floor)
    outputs.write_text(os.path.join(args.workdir, "table1.md"), text)
    outputs.write_json(
      os.path.join(args.workdir, "table1.json"),
      {
        "iou": {m: {str(f): v for f, v in r.items()} for m, r in rows.items()},
        "compute": compute,
        "threshold_floor": floor,
        "seeds_done": seed + 1,
        "finetune_steps": args.finetune_steps,
        "pretrain_steps": args.pretrain_steps,
      },
    )
  print(text)
  _plot(rows, fractions, os.path.join(args.workdir, "table1.png"))


if __name__ == "__main__":
  main()
