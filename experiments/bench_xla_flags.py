r"""ssl_ct's default XLA flags (ssl_ct/xla_flags.py) against XLA's own settings, in one process.

  python experiments/bench_xla_flags.py [--rounds 7] [--steps 8]

Each function is compiled twice, once as XLA compiles it by default and once with ssl_ct's
defaults passed as compiler options, and the two are timed in interleaved rounds (this
machine's speed drifts between runs, so only ratios measured side by side are compared).
Prints the median rate of each and the median of the per-round ratios. Cases: the rotation and
sorting demo train steps, and the demo encoders' forward pass on a batch of 64 slices (what
localization runs).
"""

import argparse
import functools
import os
import time

os.environ["SSL_CT_XLA_DEFAULTS"] = "off"  # the baseline: XLA's own settings, before ssl_ct sets its flags

import bench_train  # noqa: E402  (a sibling script, as bench_train imports torch_reference)
import jax  # noqa: E402
import numpy as np  # noqa: E402

from ssl_ct import losses, tasks, train, xla_flags  # noqa: E402
from ssl_ct.configs import rotation_xenopus, sorting_medaka  # noqa: E402


def _compiler_options():
  """xla_flags.DEFAULTS as compiler options: the enum's full name where the flag takes a short one."""
  return {name: f"LIBRARY_FUSION_TYPE_{value.upper()}" for name, value in xla_flags.DEFAULTS.items()}


def train_step_case(config):
  """(fn, args, items per call, advance): a train step on a fixed random batch; the state is carried."""
  task = tasks.get_task(config)
  tx, schedule = train.make_optimizer(config.opt, 100)
  batch = bench_train.random_batch(task, config.data.batch_size)
  state = train.init_train_state(task.make_model(), batch, jax.random.key(0), tx)
  fn = functools.partial(train.train_step, loss_fn=losses.get_loss(config.loss.name))
  return fn, (state, batch, jax.random.key(1), schedule), config.data.batch_size, lambda args, out: (out[0], *args[1:])


def encode_case(config, slices=64):
  """The encoder's forward pass on `slices` slices (localization's cost)."""
  task = tasks.get_task(config)
  model = task.make_model()
  batch = bench_train.random_batch(task, 1)
  params = model.init({"params": jax.random.key(0)}, batch)["params"]
  n = config.data.slice_size
  images = np.random.default_rng(0).uniform(size=(slices, n, n, 1)).astype(np.float32)

  def fn(params, images):
    _, out = model.encoder.apply({"params": params["encoder"]}, images)
    return out["feature_map"]

  return fn, (params, images), slices, lambda args, out: args


def compare(fn, args, items, advance, *, rounds, steps):
  """Median rates (items/s) of XLA's defaults and ssl_ct's, and the median per-round ratio."""
  variants = {"xla": jax.jit(fn), "ssl_ct": jax.jit(fn, compiler_options=_compiler_options())}
  carried = {}
  for name, jitted in variants.items():  # compile, one call
    out = jitted(*args)
    jax.block_until_ready(out)
    carried[name] = advance(args, out)
  rates = {name: [] for name in variants}
  for _ in range(rounds):
    for name, jitted in variants.items():
      current = carried[name]
      start = time.perf_counter()
      for _ in range(steps):
        out = jitted(*current)
        current = advance(current, out)
      jax.block_until_ready(out)
      rates[name].append(steps * items / (time.perf_counter() - start))
      carried[name] = current
  ratios = np.array(rates["ssl_ct"]) / np.array(rates["xla"])
  return float(np.median(rates["xla"])), float(np.median(rates["ssl_ct"])), ratios


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=8, help="calls per round")
  args = parser.parse_args()
  rotation, sorting = rotation_xenopus.get_config("demo"), sorting_medaka.get_config("demo")
  cases = {
    "rotation demo train step (pairs/s)": train_step_case(rotation),
    "sorting demo train step (slices/s)": train_step_case(sorting),
    "rotation demo encoder, 64 slices (slices/s)": encode_case(rotation),
    "sorting demo encoder, 64 slices (slices/s)": encode_case(sorting),
  }
  print(f"{jax.device_count()} {jax.devices()[0].platform} device(s); ssl_ct's flags: {_compiler_options()}")
  print(f"{'case':46s} {'XLA defaults':>12s} {'ssl_ct':>9s}  ratio (median, range over {args.rounds} rounds)")
  for name, case in cases.items():
    xla_rate, ours_rate, ratios = compare(*case, rounds=args.rounds, steps=args.steps)
    print(f"{name:46s} {xla_rate:12.1f} {ours_rate:9.1f}  {np.median(ratios):.2f}x ({ratios.min():.2f}-{ratios.max():.2f})")


if __name__ == "__main__":
  main()
