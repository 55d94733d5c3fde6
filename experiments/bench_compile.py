r"""What a cold start compiles, with the persistent cache off: ssl_ct's choices against the baselines.

  python experiments/bench_compile.py [--rounds 3]

For each demo config (rotation, sorting), in one process, median seconds over the rounds:
- the initial train state: compiled as XLA optimizes by default (the baseline) against
  unoptimized (train.RUN_ONCE, what train_loop does; a program run once per training);
- the train step's largest dropout mask, at its shape: flax's N-D draw (the baseline) against
  resnet.Dropout's flat one (the same bits);
- the train step itself, and whether runs of 2 and 2000 steps at two learning rates lower to
  one program (the schedule is an argument of the step).
Compile times only; nothing here is run.
"""

import argparse
import functools
import math
import os
import statistics
import time

os.environ["SSL_CT_COMPILATION_CACHE"] = "off"  # every compile below is a cold one

import jax  # noqa: E402
import jax.extend  # noqa: E402

from ssl_ct import losses, tasks, train  # noqa: E402
from ssl_ct.configs import rotation_xenopus, sorting_medaka  # noqa: E402


def compile_seconds(fn, *args, **options):
  """Seconds to compile jit(fn) at these arguments, every time from scratch."""
  jax.clear_caches()  # JAX keeps compiled programs in memory too
  lowered = jax.jit(fn).lower(*args)
  start = time.perf_counter()
  lowered.compile(compiler_options=options or None)
  return time.perf_counter() - start


def nested(jaxpr):
  """A jaxpr and every jaxpr nested in it."""
  yield jaxpr
  for sub in jax.extend.core.subjaxprs(jaxpr):
    yield from nested(sub)


def mask_shapes(jaxpr):
  """Shapes of the dropout masks a program draws: resnet.Dropout reshapes the flat output of
  jax.random.bernoulli (a nested `_bernoulli` program) to the mask's shape."""
  shapes = []
  for sub in nested(jaxpr):
    masks = {id(v) for e in sub.eqns if e.params.get("name") == "_bernoulli" for v in e.outvars}
    shapes += [tuple(e.params["new_sizes"]) for e in sub.eqns if e.primitive.name == "reshape" and id(e.invars[0]) in masks]
  return shapes


def bench(name, config, rounds):
  task = tasks.get_task(config)
  batch = task.example_batch(config.data.batch_size)
  tx, schedule = train.make_optimizer(config.opt, config.train.steps)
  create = functools.partial(train.create_train_state, task.make_model(), batch, tx=tx)
  key = jax.random.key(0)
  keep = 1.0 - config.model.dropout
  times = {"init optimized": [], "init once": [], "mask 4-D": [], "mask flat": [], "step": []}
  state = jax.eval_shape(create, key)
  step = functools.partial(train.train_step, loss_fn=losses.get_loss(config.loss.name))
  shape = max(mask_shapes(jax.make_jaxpr(step)(state, batch, key, schedule).jaxpr), key=math.prod)
  for _ in range(rounds):
    times["init optimized"].append(compile_seconds(create, key))
    times["init once"].append(compile_seconds(create, key, **train.RUN_ONCE))
    times["mask 4-D"].append(compile_seconds(lambda k: jax.random.bernoulli(k, keep, shape), key))
    times["mask flat"].append(compile_seconds(lambda k: jax.random.bernoulli(k, keep, (math.prod(shape),)).reshape(shape), key))
    times["step"].append(compile_seconds(step, state, batch, key, schedule))
  t = {k: statistics.median(v) for k, v in times.items()}
  programs = set()
  for lr, steps in ((config.opt.lr, 2), (config.opt.lr, 2000), (config.opt.lr * 10, 2000)):
    config.opt.lr = lr
    tx_, schedule_ = train.make_optimizer(config.opt, steps)
    state_ = train.abstract_train_state(task.make_model(), batch, tx_)
    programs.add(jax.jit(step).lower(state_, batch, key, schedule_).as_text())
  print(
    f"{name}: initial state {t['init once']:.1f} s unoptimized against {t['init optimized']:.1f} s optimized "
    f"({t['init optimized'] / t['init once']:.1f}x); dropout mask {shape} {t['mask flat']:.2f} s flat against "
    f"{t['mask 4-D']:.2f} s 4-D ({t['mask 4-D'] / t['mask flat']:.1f}x); train step {t['step']:.1f} s; "
    f"{len(programs)} step program(s) for 2 and 2000 steps at two learning rates"
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3, help="compilations of each program (the median is printed)")
  args = parser.parse_args()
  print(f"{jax.devices()[0].platform}, {os.cpu_count()} cores; median of {args.rounds} compilations each")
  bench("rotation demo", rotation_xenopus.get_config("demo"), args.rounds)
  bench("sorting demo", sorting_medaka.get_config("demo"), args.rounds)


if __name__ == "__main__":
  main()
