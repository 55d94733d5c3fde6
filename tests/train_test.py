"""Train step, train_and_evaluate with checkpoints and exact resume, SIGKILL mid-run,
1-device vs 4-device equality, and two CPU processes with gloo collectives."""

import functools
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl.testing import absltest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_ct import checkpoint, losses, report, results, run_localization, tasks, train
from ssl_ct.configs import rotation_xenopus
from ssl_ct.data import prepare, synthetic
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_config(cache_dir, steps=2):
  config = rotation_xenopus.get_config("tiny")
  config.data.cache_dir = cache_dir
  config.train.steps = steps
  return config


def _worker(workdir, cache_dir, steps, env=None, wait=True, task="rotation", then=""):
  cmd = [sys.executable, "-m", "tests.train_worker", workdir, cache_dir, str(steps), task, then]
  full_env = {**os.environ, **(env or {})}
  if not wait:
    return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  result = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def _main(workdir, *args):
  cmd = [sys.executable, "-m", "ssl_ct.main", "--config=configs/rotation_xenopus.py:tiny", f"--workdir={workdir}", *args]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


class ScheduleTest(absltest.TestCase):
  def test_learning_rate_is_optaxs_warmup_cosine_decay(self):
    for warmup, total in ((0, 10), (3, 10), (1, 2), (100, 2000)):
      opt = ml_collections.ConfigDict({"name": "adamw", "lr": 3e-3, "warmup_steps": warmup, "weight_decay": 0.0, "grad_clip": 0})
      _, schedule = train.make_optimizer(opt, total)
      reference = optax.warmup_cosine_decay_schedule(0.0, 3e-3, warmup_steps=min(warmup, total - 1), decay_steps=total)
      steps = np.arange(total + 2)
      np.testing.assert_allclose(train.learning_rate(steps, schedule), reference(steps), rtol=1e-5, atol=1e-9)

  def test_one_compiled_step_for_every_rate_run_length_decay_and_clipping_norm(self):
    config = rotation_xenopus.get_config("tiny")
    task = tasks.get_task(config)
    batch = task.example_batch(config.data.batch_size)
    step = train.jit_train_step(train.make_mesh(), losses.get_loss("rotation_nll"))
    programs = set()
    for lr, steps, decay, clip in ((1e-3, 2, 1e-4, 1.0), (1e-3, 500, 1e-4, 1.0), (0.1, 500, 0.0, 1.0), (0.1, 500, 0.05, 3.0)):
      config.opt.update(lr=lr, weight_decay=decay, grad_clip=clip)
      tx, schedule = train.make_optimizer(config.opt, steps)
      state = train.abstract_train_state(task.make_model(), batch, tx)
      programs.add(step.lower(state, batch, jax.random.key(1), schedule).as_text())
    self.assertLen(programs, 1)

  def test_decay_and_clipping_from_the_schedule_match_optaxs_constants(self):
    # Each optimizer's update with its weight decay and norm passed as data is optax's with them built in.
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -2.0])}
    grads = {"w": jnp.linspace(3.0, -2.0, 6).reshape(2, 3), "b": jnp.array([4.0, 1.0])}  # global norm ~6.6: clipped
    for name, reference in (
      ("adamw", lambda: optax.chain(optax.clip_by_global_norm(2.0), optax.adamw(1.0, weight_decay=0.01))),
      ("sgd", lambda: optax.chain(optax.clip_by_global_norm(2.0), optax.add_decayed_weights(0.01), optax.sgd(1.0, 0.9, True))),
    ):
      opt = ml_collections.ConfigDict({"name": name, "lr": 1e-3, "warmup_steps": 0, "weight_decay": 0.01, "grad_clip": 2.0})
      tx, schedule = train.make_optimizer(opt, 10)
      ours = jax.jit(tx.update)(grads, tx.init(params), params, schedule=schedule)
      expected = jax.jit(reference().update)(grads, reference().init(params), params)
      # Within a rounding step: XLA folds a constant norm into the clipping's arithmetic differently.
      jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=2e-7, atol=0), ours[0], expected[0])
      # A schedule with other values changes the update: they are read, not baked in.
      other = jax.jit(tx.update)(grads, tx.init(params), params, schedule={**schedule, "weight_decay": jnp.float32(0.5)})
      self.assertFalse(np.allclose(other[0]["b"], ours[0]["b"]))


class TrainTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cache = tempfile.mkdtemp()
    syn = rotation_xenopus.get_config("tiny").data.synthetic
    synthetic.cached_set(
      cls.cache, kind=syn.kind, num_volumes=syn.num_volumes, shape=tuple(syn.shape), seed=syn.seed, progress=False
    )

  def test_one_step_on_a_synthetic_batch(self):
    config = _tiny_config(self.cache)
    task = tasks.get_task(config)
    model = task.make_model()
    tx, schedule = train.make_optimizer(config.opt, 10)
    batch = {
      "ref": jnp.ones((4, 32, 32, 1)),
      "twin": jnp.zeros((4, 32, 32, 1)),
      "angle": jnp.arange(4),
      "volume": jnp.zeros(4, jnp.int32),
      "axis": jnp.array([0, 1, 2, 0]),
    }
    state = train.init_train_state(model, batch, jax.random.key(0), tx)
    step = jax.jit(functools.partial(train.train_step, loss_fn=losses.get_loss("rotation_nll")))
    new_state, metrics = step(state, batch, jax.random.key(1), schedule)
    self.assertEqual(int(new_state.step), 1)
    self.assertTrue(np.isfinite(float(metrics["loss"])))
    self.assertEqual(set(metrics), {"loss", "rot_acc", "rot_acc_z", "rot_acc_y", "rot_acc_x", "l2_grads", "lr"})

  def test_train_and_evaluate_writes_outputs_and_resumes_exactly(self):
    straight, resumed = tempfile.mkdtemp(), tempfile.mkdtemp()
    config = _tiny_config(self.cache, steps=3)
    state = train.train_and_evaluate(config, straight)
    self.assertEqual(int(state.step), 3)
    summary = run_localization.localize_workdir(config, straight)  # from the checkpoint: parameters only
    self.assertIn("threshold baseline", summary)
    run = results.latest(straight)
    for name in ("boxes.json", "baseline_boxes.json", "metrics.json", "report.md", "config.json"):
      self.assertTrue(os.path.exists(os.path.join(run, name)), name)
    boxes, meta = report.read_boxes(os.path.join(run, "boxes.json"))
    self.assertLen(boxes, 3)
    self.assertEqual((meta["method"], meta["crop_margin"]), ("rotation loss (certainty p0)", 0.05))
    self.assertLen(glob.glob(os.path.join(run, "curves", "*.png")), 3)
    steps = [json.loads(line)["step"] for line in open(os.path.join(straight, "metrics.jsonl"))]
    self.assertEqual(steps, [1, 2, 3])
    events = helpers.tensorboard_events(os.path.join(straight, "tensorboard"))  # the same curves for TensorBoard
    self.assertEqual([step for tag, step, _ in events if tag == "train/loss"], [1, 2, 3])
    self.assertIn(("validation/val_rot_acc", 3, "scalar"), events)
    images = {tag for tag, step, kind in events if kind == "image" and step == 3}
    self.assertIn("localization/curves/xenopus_000", images)
    self.assertIn("localization/overlays/xenopus_000", images)
    # Resume from the step-2 checkpoint (step 3 never saved): same parameters as the straight run.
    shutil.copytree(os.path.join(straight, "checkpoints"), os.path.join(resumed, "checkpoints"))
    shutil.rmtree(os.path.join(resumed, "checkpoints", "3"))
    a = _worker(straight, self.cache, 3)  # nothing left to train: loads step 3
    b = _worker(resumed, self.cache, 3)
    self.assertEqual((a["step"], b["step"]), (3, 3))
    np.testing.assert_allclose(a["sample"], b["sample"], rtol=1e-6, atol=1e-7)
    # A resumed run restores into the state's shapes: it never computes an initial state.
    with mock.patch.object(train, "init_train_state", side_effect=AssertionError("a resumed run built an initial state")):
      again = train.train_and_evaluate(config, straight)
    self.assertEqual(int(again.step), 3)
    jax.tree.map(np.testing.assert_array_equal, again.params, state.params)

  def test_validation_history_by_hand(self):
    records = [{"step": 1, "loss": 3.0}, {"step": 2, "val_m": 0.5}, {"step": 4, "val_m": 0.3}, {"step": 6, "val_m": 0.4}]
    records += [{"step": 8, "val_m": 0.3}, {"step": 10, "val_m": 0.1}]
    self.assertEqual(train.validation_history(records, "val_m", "min", upto=8), (0.3, 4, 2))  # a tie is no new best
    self.assertEqual(train.validation_history(records, "val_m", "min", upto=10), (0.1, 10, 0))
    self.assertEqual(train.validation_history(records, "val_m", "max", upto=10), (0.5, 2, 4))
    self.assertEqual(train.validation_history(records, "val_m", "min", upto=1), (None, None, 0))

  def test_keep_best_and_patience_follow_the_validation_metric(self):
    workdir = tempfile.mkdtemp()
    config = _tiny_config(self.cache, steps=8)
    config.train.eval_every, config.train.checkpoint_every = 1, 100
    config.train.keep_best, config.train.patience = True, 2
    task = tasks.get_task(config)
    model, dataset = task.make_model(), prepare.load_dataset(config.data, workdir, progress=False)
    scripted, seen = iter([0.2, 0.5, 0.4, 0.45, 0.9, 0.9]), []

    def validate(params):
      seen.append(train.host_params(params))
      return {"val_rot_acc": next(scripted)}

    run = functools.partial(
      train.train_loop,
      config,
      workdir,
      model=model,
      example_batch=task.example_batch(config.data.batch_size),
      loss_fn=losses.get_loss("rotation_nll"),
      validate=validate,
      select=task.selection,
    )
    state = run(loader=train.make_train_loader(config, task, dataset))
    self.assertEqual(int(state.step), 4)  # best at step 2, then two evaluations without a better one
    self.assertLen(seen, 4)
    self.assertEqual(sorted(os.listdir(os.path.join(workdir, "checkpoints"))), ["4"])  # the stopping step is saved
    self.assertEqual(run_localization.checkpoint_validation(config, workdir), {"val_rot_acc": 0.5, "step": 2})
    best = run_localization.trained_params(config, workdir, model, task.example_batch(1))
    jax.tree.map(np.testing.assert_array_equal, best, seen[1])  # the parameters validated at step 2
    config.train.keep_best = False  # the latest checkpoint and its validation
    self.assertEqual(run_localization.checkpoint_validation(config, workdir), {"val_rot_acc": 0.45, "step": 4})
    latest = run_localization.trained_params(config, workdir, model, task.example_batch(1))
    jax.tree.map(np.testing.assert_array_equal, latest, train.host_params(state.params))
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), best, latest))
    self.assertGreater(max(moved), 0.0)  # two steps apart: the two reads are distinguishable
    config.train.keep_best = True
    again = run(loader=train.make_train_loader(config, task, dataset))  # resumed: it had stopped, so it stays stopped
    self.assertEqual((int(again.step), len(seen)), (4, 4))

  def test_a_resumed_run_redecides_best_steps_after_its_checkpoint(self):
    workdir = tempfile.mkdtemp()
    params = {"w": np.arange(3, dtype=np.float32)}
    manager = checkpoint.make_best_manager(workdir)
    checkpoint.save_best(manager, 5, params)
    manager.wait_until_finished()
    checkpoint.drop_best_after(manager, 5)  # resumed at the best step itself: kept
    self.assertEqual(checkpoint.best_step(workdir), 5)
    checkpoint.drop_best_after(manager, 3)  # resumed before it: that run's later best is re-decided
    manager.close()
    self.assertIsNone(checkpoint.best_step(workdir))

  def test_damaged_checkpoint_is_one_line(self):
    workdir = tempfile.mkdtemp()
    first = _main(workdir, "--mode=train")
    self.assertEqual(first.returncode, 0, first.stderr[-2000:])
    # Libraries (orbax writes a dozen INFO lines per checkpoint) speak from WARNING up; ssl_ct's own lines stay.
    own = {f for _, _, files in os.walk(os.path.join(REPO, "ssl_ct")) for f in files if f.endswith(".py")}
    info_from = {m.group(1) for m in re.finditer(r"^I\d{4} \S+ +\d+ (\S+?):\d+\]", first.stderr, re.M)}
    self.assertIn("train.py", info_from)
    self.assertLessEqual(info_from, own)
    (data_file, *_) = sorted(glob.glob(os.path.join(workdir, "checkpoints", "2", "state", "d", "*")))
    with open(data_file, "r+b") as f:
      f.truncate(10)
    result = _main(workdir, "--mode=localize")
    self.assertEqual(result.returncode, 2, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1, result.stderr[-2000:])
    self.assertIn(f"checkpoint {workdir}/checkpoints/2 cannot be restored", errors[0])
    self.assertIn("delete that folder", errors[0])
    self.assertNotIn("Traceback", result.stderr)

  def test_a_restored_state_has_the_fresh_states_types(self):
    # The compiled step is keyed by its arguments' types: a resumed run must not compile another.
    config = _tiny_config(self.cache)
    workdir = tempfile.mkdtemp()
    task = tasks.get_task(config)
    iterator = iter(train.make_train_loader(config, task, prepare.load_dataset(config.data, workdir, progress=False)))
    tx, _ = train.make_optimizer(config.opt, config.train.steps)
    model, example = task.make_model(), task.example_batch(config.data.batch_size)
    state = train.init_train_state(model, example, jax.random.key(0), tx)
    manager = checkpoint.make_manager(workdir)
    checkpoint.save(manager, 1, state, iterator)
    manager.wait_until_finished()
    # The training loop's restore target: shapes and shardings only.
    abstract = train.abstract_train_state(model, example, tx, sharding=NamedSharding(train.make_mesh(), P()))
    restored, step = checkpoint.restore_latest(manager, abstract, iterator)
    self.assertEqual(step, 1)
    jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)
    types = lambda tree: [(x.dtype, x.shape, x.weak_type) for x in jax.tree.leaves(tree)]  # noqa: E731
    self.assertEqual(types(restored), types(state))

  def test_localize_mode_needs_a_checkpoint(self):
    with self.assertRaisesRegex(ValueError, "no checkpoint in"):
      run_localization.localize_workdir(_tiny_config(self.cache), tempfile.mkdtemp())

  def test_killed_mid_run_resumes_to_bit_identical_parameters(self):
    workdir = tempfile.mkdtemp()
    proc = _worker(workdir, self.cache, 24, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline and len(glob.glob(os.path.join(workdir, "checkpoints", "[0-9]*"))) < 3:
      time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # most likely during an async save
    proc.wait()
    self.assertEqual(proc.returncode, -signal.SIGKILL)  # killed, not finished
    self.assertGreaterEqual(len(glob.glob(os.path.join(workdir, "checkpoints", "*"))), 1)
    finished = _worker(workdir, self.cache, 24)
    straight = _worker(tempfile.mkdtemp(), self.cache, 24)  # the same run, never interrupted
    self.assertEqual((finished["step"], straight["step"]), (24, 24))
    self.assertEqual(finished["sha256"], straight["sha256"])

  def test_one_and_four_devices_agree(self):
    one = _worker(tempfile.mkdtemp(), self.cache, 2, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
    four = _worker(tempfile.mkdtemp(), self.cache, 2, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    self.assertEqual((one["devices"], four["devices"]), (1, 4))
    np.testing.assert_allclose(one["sample"], four["sample"], rtol=1e-4, atol=1e-6)

  def test_sorting_one_and_four_devices_agree(self):
    # The ranking loss compares slices held by different devices: the sharded step must still agree.
    cache = tempfile.mkdtemp()
    one = _worker(tempfile.mkdtemp(), cache, 2, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}, task="sorting")
    four = _worker(tempfile.mkdtemp(), cache, 2, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, task="sorting")
    self.assertEqual((one["devices"], four["devices"]), (1, 4))
    np.testing.assert_allclose(one["sample"], four["sample"], rtol=1e-4, atol=1e-6)

  def test_two_processes_with_gloo(self):
    port = 20000 + os.getpid() % 20000
    workdir = tempfile.mkdtemp()  # shared by both processes, as on a cluster filesystem
    procs = []
    for pid in range(2):
      env = {
        "SSL_CT_COORDINATOR": f"localhost:{port}",
        "SSL_CT_NUM_PROCESSES": "2",
        "SSL_CT_PROCESS_ID": str(pid),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",  # one device per process, whatever the suite runs with
      }
      procs.append(_worker(workdir, self.cache, 2, env=env, wait=False, then="localize"))
    outputs = []
    for proc in procs:
      out, err = proc.communicate(timeout=300)
      self.assertEqual(proc.returncode, 0, err[-3000:])
      outputs.append(json.loads(out.strip().splitlines()[-1]))
    self.assertEqual(sorted(o["process"] for o in outputs), [0, 1])
    self.assertEqual(outputs[0]["devices"], 2)
    np.testing.assert_array_equal(outputs[0]["sample"], outputs[1]["sample"])  # replicated parameters agree
    # Localization was split over the two processes (volumes 0, 2 and 1) into one results folder;
    # one process localizing everything from the same checkpoint gives the same file.
    split = results.latest(workdir)
    config = _tiny_config(self.cache, steps=2)
    run_localization.localize_workdir(config, workdir)
    alone = results.latest(workdir)
    self.assertNotEqual(split, alone)
    for name in ("boxes.json", "baseline_boxes.json", "metrics.json"):
      with open(os.path.join(split, name)) as f, open(os.path.join(alone, name)) as g:
        self.assertEqual(json.load(f), json.load(g), name)
    self.assertLen(glob.glob(os.path.join(split, "curves", "*.png")), 3)
    self.assertFalse(os.path.exists(os.path.join(split, ".parts")))


if __name__ == "__main__":
  absltest.main()
