r"""Sorting loss vs rotation loss on the same volumes: train each, localize, compare the boxes.

  python experiments/compare_losses.py --workdir=/tmp/compare            # synthetic medaka demo set
  python experiments/compare_losses.py --workdir=/tmp/compare --data=DIR # your volumes (truth.json for scores)

Each run is `train.train_and_evaluate` with the loss passed in as a plain function, so a new
pretext loss is one more entry in LOSSES_TO_COMPARE (a function (outputs, batch) -> (loss,
metrics) and the config whose task matches its model and data pipeline). Prints the mean
box metrics of both methods and the threshold baseline, and writes compare.md.
"""

import argparse
import functools
import os

from absl import logging

from ssl_ct import losses, outputs, run_localization, train
from ssl_ct.configs import rotation_xenopus, sorting_medaka
from ssl_ct.data import prepare

_COLUMNS = ("mae_voxels", "relative_error_pct", "iou", "recall", "kept_fraction")


def _sorting_config(steps):
  config = sorting_medaka.get_config("demo")
  config.train.steps = steps or config.train.steps
  return config


def _rotation_config(steps):
  config = rotation_xenopus.get_config("demo")
  config.train.steps = steps or config.train.steps
  return config


# name -> (config factory, loss function of (outputs, batch)).
LOSSES_TO_COMPARE = {
  "sorting": (_sorting_config, functools.partial(losses.get_loss("pairwise_ranking"), margin=0.2)),
  "rotation": (_rotation_config, losses.get_loss("rotation_nll")),
}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--data", default="", help="volumes to use ('' = the synthetic medaka demo set)")
  parser.add_argument("--steps", type=int, default=0, help="training steps per loss (0 = each demo config's)")
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)
  data_path = args.data or prepare.data_root(_sorting_config(0).data, os.path.join(args.workdir, "sorting"))
  rows = {}
  for name, (make_config, loss_fn) in LOSSES_TO_COMPARE.items():
    config = make_config(args.steps)
    config.data.path = data_path  # the same volumes for every loss
    workdir = os.path.join(args.workdir, name)
    state = train.train_and_evaluate(config, workdir, loss_fn=loss_fn)
    summary = run_localization.localize_workdir(config, workdir, params=train.host_params(state.params))
    if summary is None:
      print(f"{name}: boxes in {workdir}/localization/latest (no ground truth to score them)")
      continue
    method, baseline = summary.items()
    rows[method[0]] = method[1]
    rows["threshold baseline"] = baseline[1]
  if rows:
    lines = ["| method | " + " | ".join(_COLUMNS) + " |", "|---|" + "---|" * len(_COLUMNS)]
    lines += [f"| {m} | " + " | ".join(f"{s[c]:.3f}" for c in _COLUMNS) + " |" for m, s in rows.items()]
    text = "\n".join([f"# Sorting vs rotation loss on {data_path}", "", *lines]) + "\n"
    print(text)
    outputs.write_text(os.path.join(args.workdir, "compare.md"), text)
    outputs.write_json(os.path.join(args.workdir, "compare.json"), rows)


if __name__ == "__main__":
  main()
