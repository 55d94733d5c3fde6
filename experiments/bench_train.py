r"""Throughput of the rotation pipeline alone, the train step alone, and localization.

  python experiments/bench_train.py                 # demo config
  python experiments/bench_train.py --config=paper --steps=2   # paper config (ResNet-50, 504 px): a few steps
  python experiments/bench_train.py --torch          # the train step against the same network in PyTorch

Prints pairs/s of the data pipeline (no model), pairs/s of the jit-compiled train step on a
fixed batch (no data loading), and seconds per volume for certainty-curve localization.
The pipeline should be faster than the step, or the accelerator waits for data. With --torch,
the training loop's step against the same network in PyTorch and against itself with XLA's own
convolution weight gradients (the baseline of ssl_ct/models/conv.py), in interleaved rounds.
"""

import argparse
import contextlib
import dataclasses
import functools
import tempfile
import time

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding

from ssl_ct import losses, tasks, train
from ssl_ct.configs import rotation_xenopus
from ssl_ct.data import pipeline, prepare, volume
from ssl_ct.models import conv as convolution


def bench_pipeline(task, dataset, config, batches, read_options=None):
  """Pairs/s of the task's loader; `read_options`: grain's instead of ssl_ct's (the baseline)."""
  ours = pipeline._READ_OPTIONS
  pipeline._READ_OPTIONS = read_options or ours
  try:
    it = iter(task.make_loader(dataset, seed=0, batch_size=config.data.batch_size))
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
      next(it)
    return batches * config.data.batch_size / (time.perf_counter() - start)
  finally:
    pipeline._READ_OPTIONS = ours


def bench_step(task, config, steps):
  model = task.make_model()
  tx, schedule = train.make_optimizer(config.opt, 100)
  batch = jax.tree.map(
    lambda s: (
      np.random.default_rng(0).uniform(size=s.shape).astype(s.dtype) if s.dtype == np.float32 else np.zeros(s.shape, s.dtype)
    ),
    task.example_batch(config.data.batch_size),
  )
  state = train.init_train_state(model, batch, jax.random.key(0), tx)
  step = jax.jit(functools.partial(train.train_step, loss_fn=losses.get_loss(config.loss.name)), donate_argnums=0)
  start = time.perf_counter()
  state, metrics = step(state, batch, jax.random.key(1), schedule)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch, jax.random.key(1), schedule)
  jax.block_until_ready(metrics)
  return steps * config.data.batch_size / (time.perf_counter() - start), compile_s, state.params


def random_batch(task, batch_size):
  """The task's example batch filled with uniform noise (floats) and zeros (labels), from seed 0."""
  rng = np.random.default_rng(0)
  return jax.tree.map(
    lambda s: rng.uniform(size=s.shape).astype(s.dtype) if s.dtype == np.float32 else np.zeros(s.shape, s.dtype),
    task.example_batch(batch_size),
  )


@contextlib.contextmanager
def xla_weight_gradients():
  """Models built (traced) inside take XLA's own convolution weight gradients (ssl_ct/models/conv.py): the baseline."""
  slices = convolution.WEIGHT_GRAD_SLICES
  convolution.WEIGHT_GRAD_SLICES = 1
  try:
    yield
  finally:
    convolution.WEIGHT_GRAD_SLICES = slices


def _loop_step(task, config, batch, mesh, baseline=False):
  """The training loop's own step (batch sharded over every host device, state replicated), compiled:
  step(state) -> (state, metrics), and the initial state. `baseline`: XLA's weight gradients."""
  tx, schedule = train.make_optimizer(config.opt, 100)
  state = train.init_train_state(task.make_model(), batch, jax.random.key(0), tx, sharding=NamedSharding(mesh, jax.P()))
  sharded_step = train.jit_train_step(mesh, losses.get_loss(config.loss.name))
  global_batch = train.global_batch(batch, mesh)
  step = lambda state: sharded_step(state, global_batch, jax.random.key(1), schedule)  # noqa: E731
  with xla_weight_gradients() if baseline else contextlib.nullcontext():
    state, metrics = step(state)  # compiles
  jax.block_until_ready(metrics)
  return step, state


def bench_against_torch(task, config, steps, rounds):
  """Median ratios (and ranges) of JAX's train-step rate to the same network's in PyTorch, and to JAX
  with XLA's own convolution weight gradients (the baseline), over interleaved rounds."""
  import torch
  import torch_reference

  batch = random_batch(task, config.data.batch_size)
  mesh = train.make_mesh()
  contenders = {
    "JAX": _loop_step(task, config, batch, mesh),
    "JAX, XLA's weight gradients": _loop_step(task, config, batch, mesh, True),
  }
  torch.set_flush_denormal(True)  # as XLA on CPU does; denormal weights would slow PyTorch tenfold as they appear
  torch_model, torch_step = torch_reference.make_step(config)
  to_nchw = lambda x: torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))  # noqa: E731
  ref, twin, angle = to_nchw(batch["ref"]), to_nchw(batch["twin"]), torch.from_numpy(batch["angle"].astype(np.int64))
  jax_count = sum(x.size for x in jax.tree.leaves(contenders["JAX"][1].params))
  print(
    f"parameters: JAX {jax_count}, PyTorch {torch_reference.parameter_count(torch_model)}; PyTorch threads {torch.get_num_threads()}"
  )
  torch_step(ref, twin, angle)
  states = {name: state for name, (_, state) in contenders.items()}
  seconds = {name: [] for name in [*contenders, "PyTorch"]}
  for _ in range(rounds):
    for name, (step, _) in contenders.items():
      start = time.perf_counter()
      for _ in range(steps):
        states[name], metrics = step(states[name])
      jax.block_until_ready(metrics)
      seconds[name].append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(steps):
      torch_step(ref, twin, angle)
    seconds["PyTorch"].append(time.perf_counter() - start)
    print("  round: " + ", ".join(f"{name} {steps * config.data.batch_size / s[-1]:7.1f} pairs/s" for name, s in seconds.items()))
  ratio = lambda a, b: np.array(seconds[b]) / np.array(seconds[a])  # noqa: E731  rate of a over rate of b, per round
  return {
    "JAX over PyTorch": ratio("JAX", "PyTorch"),
    "JAX with XLA's weight gradients over PyTorch": ratio("JAX, XLA's weight gradients", "PyTorch"),
    "JAX over JAX with XLA's weight gradients": ratio("JAX", "JAX, XLA's weight gradients"),
  }


def bench_localize(task, dataset, params, volumes):
  localize = task.make_localizer(task.make_model(), params).localize
  volume = dataset.volumes[0]
  localize(volume, dataset.fovs[volume.name], dataset.ranges[volume.name])  # compile
  start = time.perf_counter()
  for volume in dataset.volumes[:volumes]:
    localize(volume, dataset.fovs[volume.name], dataset.ranges[volume.name])
  return (time.perf_counter() - start) / volumes


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", choices=("demo", "paper"), default="demo")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--workers", type=int, default=-1, help="grain worker processes (-1: the config's)")
  parser.add_argument("--torch", action="store_true", help="only the train step, against the same network in PyTorch")
  parser.add_argument("--rounds", type=int, default=5, help="interleaved JAX / PyTorch rounds of --steps steps (--torch)")
  args = parser.parse_args()
  config = rotation_xenopus.get_config("demo" if args.config == "demo" else "")
  if args.workers >= 0:
    config.data.num_workers = args.workers
  if args.config == "paper":  # the paper's network and input size on two small synthetic volumes
    config.data.synthetic.num_volumes, config.data.synthetic.shape, config.data.batch_size = 2, (112, 112, 112), 8
    config.data.num_workers = 0 if args.workers < 0 else args.workers
  task = tasks.get_task(config)
  if args.torch:
    print(
      f"{config.model.name} width {config.model.width}, {config.data.slice_size} px, batch {config.data.batch_size}, {jax.device_count()} device(s)"
    )
    for name, ratios in bench_against_torch(task, config, args.steps, args.rounds).items():
      print(f"{name}: {np.median(ratios):.2f}x (median of {args.rounds} rounds, range {ratios.min():.2f}-{ratios.max():.2f})")
    return
  workdir = tempfile.mkdtemp()
  dataset = prepare.load_dataset(config.data, workdir, progress=False)
  # The same volumes, every slice read from its file (the baseline).
  from_files = dataclasses.replace(dataset, volumes=[getattr(v, "inner", v) for v in dataset.volumes])
  print(
    f"{config.model.name} width {config.model.width}, {config.data.slice_size} px slices, batch {config.data.batch_size}, {jax.device_count()} {jax.devices()[0].platform} device(s)"
  )
  batches = max(3, args.steps // 2)
  rates = []
  for _ in range(3):  # interleaved: grain's default read options, volumes read slice by slice from their files, ssl_ct's
    rates.append(
      (
        bench_pipeline(task, dataset, config, batches, grain.ReadOptions()),
        bench_pipeline(task, from_files, config, batches),
        bench_pipeline(task, dataset, config, batches),
      )
    )
  default, files, ours = np.median(rates, axis=0)
  held = sum(isinstance(v, volume.HeldVolume) for v in dataset.volumes)
  print(
    f"data pipeline alone:   {ours:8.1f} pairs/s ({config.data.num_workers} workers, {held} of {len(dataset.volumes)} volumes "
    f"held in memory; median of 3); grain's default read options {default:.1f} ({ours / default:.2f}x), "
    f"every slice read from the files {files:.1f} ({ours / files:.2f}x)"
  )
  rate, compile_s, params = bench_step(task, config, args.steps)
  print(f"train step alone:      {rate:8.1f} pairs/s (first call with compilation: {compile_s:.1f} s)")
  print(
    f"localization:          {bench_localize(task, dataset, train.host_params(params), 2):8.2f} s per volume {dataset.volumes[0].shape}"
  )


if __name__ == "__main__":
  main()
