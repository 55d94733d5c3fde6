r"""One jit-compiled segmentation train step at the demo and the paper's sizes (issue #12's check).

  python experiments/bench_segmentation.py [--steps=2] [--batch=N] [--which=demo,r18-deeplabv3plus,r152-unet]

For each config, prints the parameter count, the compile time of the first step and slices/s
of the following `--steps` steps on a fixed random batch (no data loading). The demo row is the
study's model; the paper rows (256 px slices) are GPU/TPU settings that this checks run at all.
"""

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_train  # noqa: E402  (the train-step timing, shared)

from ssl_ct import tasks  # noqa: E402
from ssl_ct.configs import segment_medaka  # noqa: E402

CONFIGS = {
  "demo": "decoder=deeplabv3plus,demo",
  "r18-deeplabv3plus": "decoder=deeplabv3plus,variant=r18",
  "r152-unet": "decoder=unet,variant=r152",
}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--batch", type=int, default=0, help="slices per step; 0 = the config's")
  parser.add_argument("--which", default=",".join(CONFIGS))
  args = parser.parse_args()
  print("| config | slice px | batch | parameters | compile s | slices/s |")
  print("|---|---|---|---|---|---|")
  for name in args.which.split(","):
    config = segment_medaka.get_config(CONFIGS[name])
    if args.batch:
      config.data.batch_size = args.batch
    task = tasks.get_task(config)
    rate, compile_s, params = bench_train.bench_step(task, config, args.steps)
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    n = config.data.slice_size
    print(f"| {name} | {n} | {config.data.batch_size} | {count / 1e6:.1f} M | {compile_s:.1f} | {rate:.2f} |", flush=True)


if __name__ == "__main__":
  main()
