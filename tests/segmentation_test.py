"""Segmentation leg (paper 3.2): the contrastive losses, CE + Dice and the box loss by hand, the EMA update,
the decoders over every encoder, IoU, the encoder restore, and a tiny Table-1 study end to end."""

import functools
import json
import os
import subprocess
import sys
import tempfile
import types
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

from ssl_ct import config_checks, losses, segment, train
from ssl_ct.configs import segment_medaka
from ssl_ct.data import augment, labeled
from ssl_ct.errors import InputError
from ssl_ct.models import resnet, segmentation
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(row):
  row = row - row.max()
  return row - np.log(np.exp(row).sum())


class LossesTest(absltest.TestCase):
  def test_nt_xent_is_the_simclr_formula(self):
    z = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)  # B = 3 slices, two views
    t = 0.3
    u = _unit(z)
    expected = []
    for i in range(6):
      j = (i + 3) % 6
      others = [k for k in range(6) if k != i]
      sims = np.array([u[i] @ u[k] for k in others]) / t
      expected.append(-(u[i] @ u[j] / t - np.log(np.exp(sims).sum())))
    loss, metrics = losses.nt_xent(jnp.asarray(z), temperature=t)
    np.testing.assert_allclose(float(loss), np.mean(expected), rtol=1e-5)
    self.assertBetween(float(metrics["contrastive_acc"]), 0.0, 1.0)

  def test_nt_xent_is_low_when_the_views_agree(self):
    z = np.random.default_rng(1).normal(size=(4, 16)).astype(np.float32)
    agree = np.concatenate([z, z + 0.01])
    differ = np.random.default_rng(2).normal(size=(8, 16)).astype(np.float32)
    low, metrics = losses.nt_xent(jnp.asarray(agree), temperature=0.1)
    high, _ = losses.nt_xent(jnp.asarray(differ), temperature=0.1)
    self.assertLess(float(low), float(high))
    self.assertEqual(float(metrics["contrastive_acc"]), 1.0)

  def test_gradients_stay_finite_at_a_zero_embedding(self):
    z = np.random.default_rng(4).normal(size=(6, 5)).astype(np.float32)
    z[0] = 0.0  # an all-zero projection (a blank view) made the norm's gradient NaN and training diverge
    for loss in (lambda x: losses.nt_xent(x)[0], lambda x: losses.moco_v3(x, jnp.asarray(z))[0]):
      self.assertTrue(bool(jnp.all(jnp.isfinite(jax.grad(loss)(jnp.asarray(z))))))

  def test_info_nce_and_symmetric_moco_v3(self):
    rng = np.random.default_rng(3)
    q, k = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(4, 6)).astype(np.float32)
    t = 0.2
    logits = _unit(q) @ _unit(k).T / t
    expected = -np.mean([_log_softmax(logits[i])[i] for i in range(4)]) * 2 * t
    loss, _ = losses.info_nce(jnp.asarray(q), jnp.asarray(k), temperature=t)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    p = rng.normal(size=(8, 6)).astype(np.float32)
    keys = rng.normal(size=(8, 6)).astype(np.float32)
    both, _ = losses.moco_v3(jnp.asarray(p), jnp.asarray(keys), temperature=t)
    a, _ = losses.info_nce(jnp.asarray(p[:4]), jnp.asarray(keys[4:]), temperature=t)
    b, _ = losses.info_nce(jnp.asarray(p[4:]), jnp.asarray(keys[:4]), temperature=t)
    np.testing.assert_allclose(float(both), float(a) + float(b), rtol=1e-6)
    grad_keys = jax.grad(lambda kk: losses.moco_v3(jnp.asarray(p), kk, temperature=t)[0])(jnp.asarray(keys))
    np.testing.assert_array_equal(grad_keys, 0.0)  # the momentum keys carry no gradient

  def test_cross_entropy_dice_by_hand(self):
    logits = np.array([[[[2.0, 0.0], [0.0, 1.0]]]], np.float32)  # 1 x 1 x 2 pixels x 2 classes
    labels = np.array([[[0, 1]]])
    p = np.exp(logits[0, 0]) / np.exp(logits[0, 0]).sum(-1, keepdims=True)
    ce = -np.mean([np.log(p[0, 0]), np.log(p[1, 1])])
    overlap, total = p[1, 1], p[0, 1] + p[1, 1] + 1.0  # class 1: its probabilities plus its one pixel
    dice = (2 * overlap + 1.0) / (total + 1.0)
    loss, metrics = losses.cross_entropy_dice(jnp.asarray(logits), jnp.asarray(labels), dice_weight=0.5)
    np.testing.assert_allclose(float(metrics["ce"]), ce, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["dice"]), dice, rtol=1e-5)
    np.testing.assert_allclose(float(loss), ce + 0.5 * (1 - dice), rtol=1e-5)
    self.assertEqual(float(metrics["pixel_acc"]), 1.0)


class BoxLabelsTest(absltest.TestCase):
  """Fine-tuning from boxes only: the boxes of a label map, the tightness-prior loss by hand."""

  def test_box_tightness_by_hand(self):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 3, 4, 2)).astype(np.float32)
    boxes = np.array([[[1, 0, 2, 1, 3], [0, 0, 0, 0, 0]]], np.int32)  # class 1 on rows 0-1, columns 1-2; an empty slot
    p = np.exp(logits[0]) / np.exp(logits[0]).sum(-1, keepdims=True)
    fg = p[..., 1]

    def smooth_max(values):
      w = np.exp(4.0 * values)
      return np.sum(values * w) / np.sum(w)

    bags = [fg[y, 1:3] for y in (0, 1)] + [fg[0:2, x] for x in (1, 2)]
    positive = np.mean([-np.log(smooth_max(b)) for b in bags])
    outside = np.ones((3, 4), bool)
    outside[0:2, 1:3] = False
    negative = np.mean(-np.log(1 - fg[outside]))
    loss, metrics = losses.box_tightness(jnp.asarray(logits), jnp.asarray(boxes), alpha=4.0, negative_weight=0.5)
    np.testing.assert_allclose(float(metrics["box_positive"]), positive, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["box_negative"]), negative, rtol=1e-5)
    np.testing.assert_allclose(float(loss), positive + 0.5 * negative, rtol=1e-5)

  def test_the_region_itself_satisfies_the_prior_and_a_missed_row_does_not(self):
    labels = np.zeros((1, 8, 8), np.int32)
    labels[0, 2:6, 3] = 1  # a bar and its arm: every row and column of its box crosses it
    labels[0, 4, 3:6] = 1
    boxes = labeled.label_boxes(labels[0], 2)[None]

    def loss_of(mask, alpha=4.0):
      logits = jnp.asarray(np.stack([np.zeros_like(mask), np.where(mask, 20.0, -20.0)], -1), jnp.float32)
      return float(losses.box_tightness(logits, jnp.asarray(boxes), alpha=alpha)[0])

    region = labels > 0
    self.assertLess(loss_of(region, alpha=30.0), 1e-3)  # the smooth maximum tends to the maximum
    missed = region.copy()
    missed[0, 2] = False  # the bar's top row predicted background
    self.assertGreater(loss_of(missed), loss_of(region) + 1.0)
    spilled = region.copy()
    spilled[0, 0, 0] = True  # foreground outside every box
    self.assertGreater(loss_of(spilled), loss_of(region) + 0.1)

  def test_label_boxes_are_tight_one_per_region_largest_first(self):
    labels = np.zeros((10, 10), np.int32)
    labels[1:4, 1:3] = 1  # 6 px
    labels[4, 3] = 1  # touches it diagonally: the same region (8-connected)
    labels[7:9, 6:9] = 1  # 6 px, its own region
    labels[0, 9] = 2  # another class
    boxes = labeled.label_boxes(labels, 4)
    np.testing.assert_array_equal(boxes, [[1, 1, 5, 1, 4], [1, 7, 9, 6, 9], [2, 0, 1, 9, 10], [0, 0, 0, 0, 0]])
    merged = labeled.label_boxes(labels, 2)  # the two smaller regions share the last box
    np.testing.assert_array_equal(merged, [[1, 1, 5, 1, 4], [1, 0, 9, 6, 10]])
    np.testing.assert_array_equal(labeled.label_boxes(np.zeros((4, 4), np.int32), 3), np.zeros((3, 5)))

  def test_box_labels_need_the_box_loss(self):
    config = segment_medaka.get_config("tiny,boxes")
    config_checks.validate(config)
    config.loss.name = "cross_entropy_dice"
    with self.assertRaisesRegex(InputError, "label_kind='box' does not go with loss.name='cross_entropy_dice'"):
      config_checks.validate(config)


class EmaTest(absltest.TestCase):
  def test_momentum_parameters_follow_the_updated_parameters_inside_the_step(self):
    model = segmentation.make_model(segment_medaka.get_config("tiny").model, num_classes=2)
    batch = {"image": jnp.ones((2, 24, 24, 1)), "labels": jnp.zeros((2, 24, 24), jnp.int32)}
    tx = optax.sgd(1.0)  # at the schedule's rate, 0.5 from the first step (no warmup): the first step moves
    schedule = {"peak_lr": 0.5, "warmup_steps": 0, "total_steps": 1}
    seen = {}

    def loss_fn(outputs, batch):
      seen["keys"] = sorted(outputs)  # the step hands the online and the momentum outputs
      return losses.cross_entropy_dice(outputs["online"], batch["labels"])

    state = train.init_train_state(model, batch, jax.random.key(0), tx, momentum=0.9)
    before = state.momentum_params
    # Compiled, as the loop runs it (op by op, this tiny DeepLabV3+ init and step took 40 s on 2 cores).
    step = jax.jit(functools.partial(train.train_step, loss_fn=loss_fn))
    new_state, _ = step(state, batch, jax.random.key(1), schedule)
    self.assertEqual(seen["keys"], ["momentum", "online"])
    expected = jax.tree.map(lambda old, new: 0.9 * old + 0.1 * new, before, new_state.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new_state.momentum_params, expected)
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new_state.params, state.params))
    self.assertGreater(max(moved), 0.0)


class DecodersTest(parameterized.TestCase):
  @parameterized.product(encoder=sorted(resnet.ENCODERS), decoder=sorted(segmentation.DECODERS))
  def test_logits_at_input_resolution_for_every_encoder(self, encoder, decoder):
    config = segment_medaka.get_config(f"decoder={decoder}").model
    config.name, config.width = encoder, 8
    model = segmentation.make_model(config, num_classes=3)
    images = jax.ShapeDtypeStruct((2, 96, 80, 1), jnp.float32)  # not square: any size the encoder takes
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), {"image": x}), images)
    logits, _ = jax.eval_shape(lambda v, x: model.apply(v, {"image": x}), variables, images)
    self.assertEqual(logits.shape, (2, 96, 80, 3))
    self.assertIn("encoder", variables["params"])

  @parameterized.parameters(("deeplabv3plus", "r18"), ("unet", "r152"))
  def test_paper_sizes(self, decoder, variant):
    config = segment_medaka.get_config(f"decoder={decoder},variant={variant}")
    model = segmentation.make_model(config.model, num_classes=config.data.num_classes)
    n = config.data.slice_size
    images = jax.ShapeDtypeStruct((config.data.batch_size, n, n, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), {"image": x}), images)
    logits, _ = jax.eval_shape(lambda v, x: model.apply(v, {"image": x}), variables, images)
    self.assertEqual(logits.shape, (config.data.batch_size, n, n, 2))
    if decoder == "deeplabv3plus":  # the paper's 256 channels in the ASPP and the decoder (the demo scales them)
      self.assertEqual(variables["params"]["decoder_2"]["Conv_0"]["kernel"].shape[-1], 256)
      self.assertEqual(variables["params"]["aspp_project"]["Conv_0"]["kernel"].shape[-1], 256)

  def test_a_real_forward_pass_of_the_tiny_model(self):
    config = segment_medaka.get_config("tiny")
    model = segmentation.make_model(config.model, num_classes=2)
    images = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 24, 24, 1)), jnp.float32)
    variables = helpers.init_variables(model, jax.random.key(0), {"image": images})
    logits, _ = model.apply(variables, {"image": images})
    self.assertEqual(logits.shape, (2, 24, 24, 2))
    self.assertTrue(bool(jnp.all(jnp.isfinite(logits))))


class IouAndAugmentTest(absltest.TestCase):
  def test_iou_by_hand(self):
    pred = np.zeros((2, 3, 3), np.int32)
    true = np.zeros((2, 3, 3), np.int32)
    pred[0, :2, :2] = 1  # 4 voxels
    true[0, 1:, 1:] = 1  # 4 voxels, 1 shared
    self.assertAlmostEqual(labeled.iou(pred, true), 1 / 7)
    self.assertEqual(labeled.iou(np.zeros((2, 2)), np.zeros((2, 2))), 1.0)  # nothing of the class anywhere
    self.assertEqual(labeled.iou(true, true), 1.0)

  def test_foreground_slices_are_repeated_to_the_asked_share(self):
    labels = np.zeros((10, 4, 4), np.int32)
    labels[2, 1, 1] = labels[5, 0, 3] = 1  # two of ten slices show the structure
    records = [(0, i) for i in range(10)]
    with mock.patch.object(labeled, "open_labels", lambda dataset, v: mock.Mock(read=lambda: labels)):
      drawn = labeled.oversample_foreground(None, records, axis=0, fraction=1 / 3)
      self.assertEqual(drawn.count((0, 2)), 2)
      self.assertEqual(drawn.count((0, 5)), 2)
      self.assertLen(drawn, 12)  # 4 of 12 draws show it: the asked third
      self.assertEqual(sorted(set(drawn)), records)  # the same labelled slices, no new ones
      self.assertEqual(labeled.oversample_foreground(None, records, axis=0, fraction=0.0), records)
      self.assertEqual(labeled.oversample_foreground(None, records, axis=0, fraction=0.1), records)  # 20% already

  def test_a_small_label_fraction_keeps_the_structure_in_proportion(self):
    labels = np.zeros((200, 4, 4), np.int32)
    labels[40:60, 1, 1] = 1  # 20 of 200 slices show the structure
    dataset = types.SimpleNamespace(volumes=[types.SimpleNamespace(shape=labels.shape, name="a")], fovs={"a": None})
    with mock.patch.object(labeled, "open_labels", lambda dataset, v: mock.Mock(read=lambda: labels)):
      for fraction, shown, others in ((0.01, 1, 2), (0.1, 2, 18), (0.5, 10, 90)):
        records = labeled.labelled_records(dataset, [0], axis=0, label_fraction=fraction, seed=3)
        showing = [i for _, i in records if 40 <= i < 60]
        self.assertEqual((len(showing), len(records) - len(showing)), (shown, others), fraction)
      self.assertLen(labeled.labelled_records(dataset, [0], axis=0, label_fraction=1.0, seed=3), 200)
      again = labeled.labelled_records(dataset, [0], axis=0, label_fraction=0.1, seed=3)
      self.assertEqual(again, labeled.labelled_records(dataset, [0], axis=0, label_fraction=0.1, seed=3))

  def test_augment_strength_zero_is_identity_and_the_rest_is_seeded(self):
    image = np.random.default_rng(0).uniform(size=(32, 32, 1)).astype(np.float32)
    self.assertIs(augment.augment(image, np.random.default_rng(1), 0.0), image)
    a = augment.augment(image, np.random.default_rng(1), 1.0)
    b = augment.augment(image, np.random.default_rng(1), 1.0)
    np.testing.assert_array_equal(a, b)
    self.assertEqual((a.shape, a.dtype), (image.shape, np.float32))
    self.assertGreater(float(np.abs(a - image).mean()), 0.01)
    self.assertBetween(float(a.min()), 0.0, 1.0)
    self.assertBetween(float(a.max()), 0.0, 1.0)


class StudyTest(absltest.TestCase):
  """The tiny study once: pre-trains with sorting, fine-tunes from it and from random init."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp()
    command = [
      sys.executable,
      os.path.join(ROOT, "experiments", "segmentation_pretraining.py"),
      f"--workdir={cls.workdir}",
      "--tiny",
      "--seeds=1",
      "--methods=none,sorting,box",
      "--pretrain-steps=2",
      "--finetune-steps=2",
    ]
    cls.study = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)

  def test_the_study_writes_its_table(self):
    self.assertEqual(self.study.returncode, 0, self.study.stderr[-3000:])
    with open(os.path.join(self.workdir, "table1.json")) as f:
      table = json.load(f)
    self.assertEqual(set(table["iou"]), {"none", "sorting", "box"})
    for by_fraction in table["iou"].values():
      self.assertEqual(set(by_fraction), {"0.01", "1.0"})
      for ious in by_fraction.values():
        self.assertLen(ious, 1)
        self.assertBetween(ious[0], 0.0, 1.0)
    text = open(os.path.join(self.workdir, "table1.md")).read()
    self.assertIn("| sorting |", text)
    self.assertIn("| box labels only (random init) |", text)
    self.assertIn("Intensity-threshold floor", text)
    self.assertTrue(os.path.exists(os.path.join(self.workdir, "table1.png")))
    finetuned = os.path.join(self.workdir, "finetune", "sorting_1_0", "segmentation", "latest")
    self.assertTrue(os.path.exists(os.path.join(finetuned, "report.md")))
    self.assertNotEmpty([n for n in os.listdir(finetuned) if n.endswith("_labels.zarr")])
    with open(os.path.join(self.workdir, "finetune", "box_1_0", "segmentation", "latest", "metrics.json")) as f:
      self.assertEqual(json.load(f)["label_kind"], "box")

  def test_the_sorting_encoder_goes_into_the_segmentation_model_by_name(self):
    self.assertEqual(self.study.returncode, 0, self.study.stderr[-3000:])
    pretrained = os.path.join(self.workdir, "pretrain", "sorting")
    config = segment_medaka.get_config("tiny")
    encoder = segment.pretrained_encoder(pretrained, config.model)
    model = segmentation.make_model(config.model, num_classes=2)
    images = jnp.zeros((1, 24, 24, 1))
    params = helpers.init_variables(model, jax.random.key(5), {"image": images})["params"]
    loaded = segment.load_encoder(params, encoder)
    for name in params["encoder"]:
      jax.tree.map(np.testing.assert_array_equal, loaded["encoder"][name], encoder[name])
    self.assertEqual(set(loaded) - {"encoder"}, set(params) - {"encoder"})  # the decoder stays as initialised
    config.model.width = 8
    with self.assertRaisesRegex(InputError, "model.width=4"):
      segment.pretrained_encoder(pretrained, config.model)
    with self.assertRaisesRegex(InputError, "cannot read"):
      segment.pretrained_encoder(tempfile.mkdtemp(), config.model)

  def _main(self, workdir, *flags):
    command = [sys.executable, "-m", "ssl_ct.main", "--config=configs/segment_medaka.py:tiny", f"--workdir={workdir}"]
    command += [f"--config.data.cache_dir={os.path.join(self.workdir, 'data')}", *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)

  def test_main_fine_tunes_from_a_pretext_workdir_and_refuses_another_encoder(self):
    self.assertEqual(self.study.returncode, 0, self.study.stderr[-3000:])
    pretrained = os.path.join(self.workdir, "pretrain", "sorting")
    workdir = tempfile.mkdtemp()
    done = self._main(workdir, f"--config.init={pretrained}")
    self.assertEqual(done.returncode, 0, done.stderr[-3000:])
    self.assertIn("segmentation IoU on the test volumes: iou_1=", done.stdout)
    run = os.path.join(workdir, "segmentation", "latest")
    with open(os.path.join(run, "metrics.json")) as f:
      result = json.load(f)
    self.assertEqual(result["pretext_init"], pretrained)
    self.assertBetween(result["summary"]["iou_1"], 0.0, 1.0)
    self.assertNotEmpty(os.listdir(os.path.join(run, "overlays")))
    refused = self._main(tempfile.mkdtemp(), f"--config.init={pretrained}", "--config.model.width=8")
    self.assertEqual(refused.returncode, 2, refused.stderr[-3000:])
    self.assertRegex(refused.stderr.strip().splitlines()[-1], r"^error: init=.*model\.width=4")


if __name__ == "__main__":
  absltest.main()
