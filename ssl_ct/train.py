"""Training: train state, the jit-compiled data-parallel step, and the training loop.

The batch is sharded over a 1-D mesh of every device JAX sees (all processes), parameters
are replicated; `jax.jit` with NamedSharding inserts the gradient all-reduce. The mesh axis
is `AxisType.Auto`, so per-example dropout keys inside the model need no sharding of their own.
"""

import functools
import time
from typing import Any

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from absl import logging
from flax import struct
from flax.training import train_state
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_ct import checkpoint, compilation_cache, losses, metric_writer, tasks
from ssl_ct.data import prepare
from ssl_ct.errors import InputError

BATCH_AXIS = "data"


def make_mesh():
  return jax.make_mesh((jax.device_count(),), (BATCH_AXIS,), axis_types=(AxisType.Auto,))


# name -> fn(weight decay) -> optax transformation at a unit learning rate: train_step scales its
# updates by learning_rate(), and the weight decay (like the clipping norm) is a value of the
# schedule, so the compiled step is the same for every rate, run length, decay and norm.
OPTIMIZERS = {
  "adamw": lambda decay: optax.adamw(1.0, weight_decay=decay),
  "adam": lambda decay: optax.adam(1.0),
  "sgd": lambda decay: optax.chain(optax.add_decayed_weights(decay), optax.sgd(1.0, momentum=0.9, nesterov=True)),
}


def _transformation(name, clip, schedule):
  """The optimizer `name` at a unit rate, clipped to the global norm schedule["grad_clip"] when `clip`,
  decaying weights by schedule["weight_decay"]; the two may be traced (the step's inputs)."""
  clipping = [optax.clip_by_global_norm(schedule["grad_clip"])] if clip else []
  return optax.chain(*clipping, OPTIMIZERS[name](schedule["weight_decay"]))


def make_optimizer(opt_config, total_steps):
  """(optax transformation at a unit rate with optional global-norm clipping, the schedule's values).

  The schedule is warmup + cosine decay as data (see learning_rate), with the weight decay and
  the clipping norm, an argument of the step: the transformation reads the latter two from its
  `schedule` extra argument (train_step passes it). Whether it clips (`opt.grad_clip` > 0) is
  part of its structure, as the optimizer is.
  """
  if opt_config.name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {opt_config.name!r}; valid names: {', '.join(OPTIMIZERS)}")
  schedule = {
    "peak_lr": jnp.float32(opt_config.lr),
    "warmup_steps": jnp.int32(min(opt_config.warmup_steps, max(total_steps - 1, 0))),
    "total_steps": jnp.int32(max(total_steps, 1)),
    "weight_decay": jnp.float32(opt_config.weight_decay),
    "grad_clip": jnp.float32(opt_config.grad_clip),
  }
  build = functools.partial(_transformation, opt_config.name, opt_config.grad_clip > 0)

  def update(updates, state, params=None, *, schedule):
    return build(schedule).update(updates, state, params)

  return optax.GradientTransformationExtraArgs(build(schedule).init, update), schedule


def learning_rate(step, schedule):
  """optax's warmup_cosine_decay_schedule from 0 (linear to the peak over the warmup, cosine to 0
  at the last step) computed from the schedule's values, which stay inputs of the compiled step."""
  peak, warmup, total = schedule["peak_lr"], schedule["warmup_steps"], schedule["total_steps"]
  step, warmup, total = (jnp.asarray(x, jnp.float32) for x in (step, warmup, total))
  rising = peak * step / jnp.maximum(warmup, 1.0)
  done = jnp.clip((step - warmup) / jnp.maximum(total - warmup, 1.0), 0.0, 1.0)
  return jnp.where(step < warmup, rising, peak * 0.5 * (1.0 + jnp.cos(jnp.pi * done)))


class TrainState(train_state.TrainState):
  """flax's TrainState plus an optional momentum (EMA) copy of the parameters (MoCo v3's key encoder)."""

  momentum_params: Any = None
  momentum: float = struct.field(pytree_node=False, default=0.0)


def create_train_state(model: nn.Module, example_batch, rng, tx, momentum=0.0):
  """Initial TrainState; `example_batch` may hold ShapeDtypeStructs. momentum > 0 keeps an EMA of the parameters."""
  dummy = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), example_batch)
  params = model.init({"params": rng}, dummy, deterministic=True)["params"]
  ema = jax.tree.map(jnp.copy, params) if momentum else None  # its own buffers: the state is donated
  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx, momentum_params=ema, momentum=momentum)
  # A strongly typed step count, as a checkpoint restores it: a resumed run then runs the same
  # compiled step as a fresh one (a weakly typed 0 made it another program, compiled again).
  return state.replace(step=jnp.zeros((), jnp.int32))


# The initializers' random numbers are a program run once per training, and optimizing it was most
# of a cold start (7.8 -> 1.1 s for the tiny model, 11.7 -> 3.0 s for the demo's, on 2 cores);
# unoptimized, a few parameters in a hundred come out one rounding step apart.
RUN_ONCE = {"xla_backend_optimization_level": 0}


def init_train_state(model: nn.Module, example_batch, rng, tx, momentum=0.0, sharding=None):
  """create_train_state compiled for a single call (see RUN_ONCE); `sharding` places the state."""
  create = functools.partial(create_train_state, model, example_batch, tx=tx, momentum=momentum)
  placement = {} if sharding is None else {"out_shardings": sharding}
  return jax.jit(create, compiler_options=RUN_ONCE, **placement)(rng)


def abstract_train_state(model: nn.Module, example_batch, tx, momentum=0.0, sharding=None):
  """init_train_state's output as ShapeDtypeStructs (placed by `sharding`), computing nothing: a
  restore target, or the state to lower a step at."""
  create = functools.partial(create_train_state, model, example_batch, tx=tx, momentum=momentum)
  abstract = jax.eval_shape(create, jax.random.key(0))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)


def train_step(state, batch, rng, schedule, *, loss_fn):
  """One SGD step at learning_rate(state.step, schedule); returns the new state and this step's metrics.

  With momentum parameters the loss sees {"online": outputs, "momentum": outputs of the EMA
  parameters (no gradient)}, and the EMA follows the updated parameters.
  """
  rng = jax.random.fold_in(rng, state.step)

  def objective(params):
    outputs, _ = state.apply_fn({"params": params}, batch, deterministic=False, rngs={"dropout": rng})
    if state.momentum_params is not None:
      key_outputs, _ = state.apply_fn({"params": state.momentum_params}, batch, deterministic=False, rngs={"dropout": rng})
      outputs = {"online": outputs, "momentum": jax.lax.stop_gradient(key_outputs)}
    return loss_fn(outputs, batch)

  (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  lr = learning_rate(state.step, schedule)
  metrics = {**metrics, "loss": loss, "l2_grads": optax.tree.norm(grads), "lr": lr}
  tx = optax.with_extra_args_support(state.tx)  # a plain optax transformation ignores the schedule
  updates, opt_state = tx.update(grads, state.opt_state, state.params, schedule=schedule)
  params = optax.apply_updates(state.params, jax.tree.map(lambda u: lr.astype(u.dtype) * u, updates))
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  if state.momentum_params is not None:
    ema = optax.incremental_update(new_state.params, state.momentum_params, step_size=1.0 - state.momentum)
    new_state = new_state.replace(momentum_params=ema)
  return new_state, metrics


def jit_train_step(mesh, loss_fn):
  """train_step compiled once with replicated state and a batch sharded along the mesh."""
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(BATCH_AXIS))
  step = functools.partial(train_step, loss_fn=loss_fn)
  shardings = (replicated, sharded, replicated, replicated)
  return jax.jit(step, in_shardings=shardings, out_shardings=(replicated, replicated), donate_argnums=0)


def global_batch(local_batch, mesh):
  """This process's numpy batch -> one global jax.Array sharded along the batch axis."""
  sharding = NamedSharding(mesh, P(BATCH_AXIS))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def _check_finite(metrics, step):
  bad = [k for k, v in metrics.items() if not np.isfinite(v)]
  if bad:
    raise FloatingPointError(
      f"training diverged at step {step}: {', '.join(bad)} is NaN or Inf; lower --config.opt.lr or set --config.opt.grad_clip"
    )


def check_batch_size(batch_size):
  devices, processes = jax.device_count(), jax.process_count()
  if batch_size % devices or batch_size % processes:
    raise InputError(f"batch size {batch_size} must be divisible by the {devices} devices; set --config.data.batch_size")
  return batch_size // processes


def make_validator(model, loss_fn, batches):
  """params -> {"val_<metric>": mean over the fixed held-out batches}, or None without batches."""
  if not batches:
    return None

  @jax.jit
  def metrics_of(params, batch):
    outputs, _ = model.apply({"params": params}, batch, deterministic=True)
    loss, metrics = loss_fn(outputs, batch)
    return {**metrics, "loss": loss}

  def validate(params):
    params = host_params(params)  # one device is plenty for a few batches, on any mesh
    per_batch = [jax.device_get(metrics_of(params, batch)) for batch in batches]
    return {f"val_{k}": float(np.mean([m[k] for m in per_batch])) for k in per_batch[0]}

  return validate


def better(value, best, mode):
  """Whether a validation `value` improves on `best` (None: nothing yet); mode "min" or "max"."""
  return best is None or (value < best if mode == "min" else value > best)


def validation_history(records, key, mode, upto):
  """(best value, its step, evaluations logged after it) of `key` in the metrics records up to step `upto`."""
  best, best_at, since = None, None, 0
  for record in records:
    if key not in record or record["step"] > upto:
      continue
    if better(record[key], best, mode):
      best, best_at, since = record[key], record["step"], 0
    else:
      since += 1
  return best, best_at, since


def train_loop(
  config, workdir, *, model, loader, example_batch, loss_fn, units="pairs", validate=None, init_params=None, select=None
):
  """Trains config.train.steps steps with checkpoints/resume; returns the final TrainState.

  `validate(params) -> metrics` runs every `config.train.eval_every` steps and at the end.
  `init_params(params) -> params` replaces the random initial parameters of a fresh run (a
  pre-trained encoder); a resumed run keeps its checkpoint's. `select` = (validation metric,
  "min" | "max"): with `train.keep_best` the best step's parameters go to <workdir>/best, and
  `train.patience` > 0 stops the run after that many evaluations without a new best (a
  plateau); both read the metrics already logged when a run resumes.
  """
  mesh = make_mesh()
  tx, schedule = make_optimizer(config.opt, config.train.steps)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  replicated = NamedSharding(mesh, P())
  iterator = iter(loader)
  manager = checkpoint.make_manager(workdir)
  # A resumed run restores into the state's shapes alone: the initial state is computed (and
  # compiled) only for a fresh run.
  abstract = abstract_train_state(model, example_batch, tx, config.opt.ema_momentum, replicated)
  state, start = checkpoint.restore_latest(manager, abstract, iterator)
  if start == 0:
    state = init_train_state(model, example_batch, init_rng, tx, config.opt.ema_momentum, replicated)
  if start == 0 and init_params is not None:
    state = state.replace(params=jax.device_put(init_params(host_params(state.params)), replicated))
  step_fn = jit_train_step(mesh, loss_fn)
  writer = metric_writer.MetricWriter(workdir)
  keep_best = bool(select and validate and config.train.get("keep_best", False))
  patience = config.train.get("patience", 0) if select and validate else 0
  best_manager = checkpoint.make_best_manager(workdir) if keep_best else None
  if best_manager is not None:
    checkpoint.drop_best_after(best_manager, start)
  best, best_at, since = (None, None, 0)
  if select and start:
    best, best_at, since = validation_history(metric_writer.read_metrics(workdir), *select, upto=start)
  if patience and since >= patience:  # a resumed run that had already stopped
    start = config.train.steps
  batch_size = config.data.batch_size
  bar = tqdm.tqdm(total=config.train.steps, initial=start, desc="train", disable=jax.process_index() != 0, unit="step")
  tick, tick_step = time.perf_counter(), start
  last = start
  for step in range(start + 1, config.train.steps + 1):
    last = step
    batch = global_batch(next(iterator), mesh)
    state, metrics = step_fn(state, batch, step_rng, schedule)
    record = {}  # one metrics.jsonl line per logged step: training and validation together
    if step % config.train.log_every == 0 or step == config.train.steps:
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      _check_finite(metrics, step)
      rate = batch_size * (step - tick_step) / (time.perf_counter() - tick)
      tick, tick_step = time.perf_counter(), step
      record |= {**metrics, f"{units}_per_s": rate}
      bar.set_postfix({k: f"{metrics[k]:.3g}" for k in metrics if k not in ("lr", "l2_grads")} | {f"{units}/s": f"{rate:.0f}"})
    if validate and (step % config.train.eval_every == 0 or step == config.train.steps):
      val_metrics = validate(state.params)
      record |= val_metrics
      bar.write(f"step {step}: " + "  ".join(f"{k}={v:.4g}" for k, v in val_metrics.items()))
      if select:
        if better(val_metrics[select[0]], best, select[1]):
          best, best_at, since = val_metrics[select[0]], step, 0
          if keep_best:
            checkpoint.save_best(best_manager, step, state.params)
        else:
          since += 1
    if record:
      writer.write(step, record)
    bar.update(1)
    stop = bool(patience) and since >= patience
    if step % config.train.checkpoint_every == 0 or step == config.train.steps or stop:
      checkpoint.save(manager, step, state, iterator)
    if stop:
      bar.write(f"stopped at step {step}: {select[0]} has not improved on {best:.4g} (step {best_at}) for {patience} evaluations")
      break
  bar.close()
  writer.close()
  manager.wait_until_finished()
  manager.close()
  if best_manager is not None:
    best_manager.wait_until_finished()
    best_manager.close()
  if best_at is not None:
    logging.info("best %s %.4g at step %d%s", select[0], best, best_at, " (its parameters in best/)" if keep_best else "")
  logging.info("training done at step %d", last)
  return state


def make_train_loader(config, task, dataset):
  """The task's loader for this process: its share of the global batch, its shard of the records."""
  local_batch = check_batch_size(config.data.batch_size)
  shard = grain.sharding.ShardByJaxProcess(drop_remainder=True) if jax.process_count() > 1 else None
  return task.make_loader(dataset, seed=config.seed, batch_size=local_batch, shard_options=shard)


def host_params(params):
  """Replicated parameters as host numpy arrays (works on every process of a multi-host run)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)


def train_and_evaluate(config, workdir, *, loss_fn=None, dataset=None):
  """Trains `config.train.steps` steps with validation, checkpoints and resume; returns the final TrainState.

  `loss_fn(logits, batch) -> (loss, metrics)` replaces the config's loss (experiments swap
  losses this way). Localization is a separate step (ssl_ct.run_localization.localize_workdir).
  """
  compilation_cache.enable()
  dataset = dataset or prepare.load_dataset(config.data, workdir)
  task = tasks.get_task(config)
  model = task.make_model()
  loss_fn = loss_fn or functools.partial(losses.get_loss(config.loss.name), **config.loss.kw)
  loader = make_train_loader(config, task, dataset)
  validate = make_validator(model, loss_fn, task.validation_batches(dataset))
  example = task.example_batch(config.data.batch_size)
  return train_loop(
    config,
    workdir,
    model=model,
    loader=loader,
    example_batch=example,
    loss_fn=loss_fn,
    units=task.units,
    validate=validate,
    init_params=task.init_params(),
    select=getattr(task, "selection", None),
  )
