r"""Cost of MC-dropout localization against one deterministic pass: the exact (closed-form)
variance and T stochastic passes (one vmap), in the same run.

  python experiments/bench_mc_dropout.py                  # demo config, T = 32
  python experiments/bench_mc_dropout.py --config=paper   # ResNet-18 on 256 px slices (the paper's network)

Dropout sits right before the 1x1 "embed" convolution, so the vmap over dropout keys
batches only that convolution; the ResNet stages run once. The exact variance needs no
samples at all: one pass and a few multiply-adds per superpixel. Goal: <= 1.1x one
deterministic pass at every scale. Also prints seconds per volume of the whole localizer
(slicing, resizing, variance grid, region) on the demo volumes, exact and sampled.
"""

import argparse
import tempfile
import time

import jax
import numpy as np

from ssl_ct import localize_sorting, tasks
from ssl_ct.configs import sorting_medaka
from ssl_ct.data import prepare


def _time(fn, *args, repeats):
  jax.block_until_ready(fn(*args))  # compile
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", choices=("demo", "paper"), default="demo")
  parser.add_argument("--samples", type=int, default=32, help="T, MC-dropout passes")
  parser.add_argument("--batch", type=int, default=32, help="slices per call")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  config = sorting_medaka.get_config("demo" if args.config == "demo" else "")
  task = tasks.get_task(config)
  model = task.make_model()
  n = config.data.slice_size
  images = jax.numpy.asarray(np.random.default_rng(0).uniform(size=(args.batch, n, n, 1)).astype(np.float32))
  params = model.init({"params": jax.random.key(0)}, {"image": images[:1]})["params"]
  one_pass = _time(localize_sorting.make_feature_fn(model), params, images, repeats=args.repeats)
  exact_fn = localize_sorting.make_exact_variance_fn(model, config.model.dropout)
  exact = _time(exact_fn, params, images, jax.random.key(1), repeats=args.repeats)
  mc = _time(localize_sorting.make_variance_fn(model, args.samples), params, images, jax.random.key(1), repeats=args.repeats)
  print(f"{config.model.name} width {config.model.width}, {n} px slices, batch {args.batch}, {jax.devices()[0].platform}")
  print(f"one deterministic pass:   {1e3 * one_pass:8.1f} ms  ({args.batch / one_pass:7.1f} slices/s)")
  print(
    f"exact dropout variance:   {1e3 * exact:8.1f} ms  ({args.batch / exact:7.1f} slices/s)  = {exact / one_pass:.2f}x one pass"
  )
  print(
    f"T={args.samples} MC-dropout passes: {1e3 * mc:8.1f} ms  ({args.batch / mc:7.1f} slices/s)  = {mc / one_pass:.2f}x one pass"
  )
  if args.config == "demo":
    workdir = tempfile.mkdtemp()
    config.data.synthetic.num_volumes = 2
    dataset = prepare.load_dataset(config.data, workdir, progress=False)
    volume = dataset.volumes[0]
    for variance in ("exact", "sampled"):
      config.localize.variance = variance
      localize_one = task.make_localizer(model, params).localize
      localize_one(volume, dataset.fovs[volume.name], dataset.ranges[volume.name])  # compile
      start = time.perf_counter()
      localize_one(volume, dataset.fovs[volume.name], dataset.ranges[volume.name])
      print(f"whole localizer, {variance:7s}: {time.perf_counter() - start:8.2f} s per volume {volume.shape}")


if __name__ == "__main__":
  main()
