"""ResNet shapes for every depth (jax.eval_shape: no compute), task heads, dropout switch, the
bfloat16 compute dtype."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest, parameterized

from ssl_ct import losses, train
from ssl_ct.configs import segment_medaka
from ssl_ct.models import conv as convolution
from ssl_ct.models import heads, resnet, segmentation
from tests import helpers


def _model_config(name="resnet_tiny", dropout=0.0, **extra):
  return ml_collections.ConfigDict(
    {"name": name, "width": 4, "dropout": dropout, "small_stem": True, "head_hidden": 8, "output_stride": 32, **extra}
  )


class ResNetTest(parameterized.TestCase):
  @parameterized.parameters(
    ("resnet18", 512, 11.4),
    ("resnet34", 512, 21.5),
    ("resnet50", 2048, 27.7),
    ("resnet101", 2048, 46.7),
    ("resnet152", 2048, 62.3),
  )
  def test_paper_depths(self, name, channels, millions):
    model = resnet.get_encoder(name)(num_outputs=7)
    x = jax.ShapeDtypeStruct((2, 224, 224, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    (logits, out) = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    self.assertEqual(logits.shape, (2, 7))
    self.assertEqual(out["feature_map"].shape, (2, 7, 7, channels))
    self.assertEqual(out["embedding"].shape, (2, channels))
    count = sum(np.prod(p.shape) for p in jax.tree.leaves(variables)) / 1e6
    self.assertAlmostEqual(count, millions, delta=0.1)
    self.assertNotIn("batch_stats", variables)  # GroupNorm: no mutable state

  @parameterized.parameters((32, 7, False), (16, 14, False), (8, 28, False), (16, 4, True), (8, 8, True))
  def test_output_stride(self, output_stride, side, small_stem):
    # Stages past the output stride dilate instead of striding: a finer grid, the same parameters.
    size = 64 if small_stem else 224
    model = resnet.ResNet18(num_outputs=1, output_stride=output_stride, small_stem=small_stem)
    x = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    _, out = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    self.assertEqual(out["feature_map"].shape, (1, side, side, 512))
    reference = jax.eval_shape(lambda x: resnet.ResNet18(num_outputs=1, small_stem=small_stem).init(jax.random.key(0), x), x)
    self.assertEqual(jax.tree.map(lambda a: a.shape, variables), jax.tree.map(lambda a: a.shape, reference))

  def test_unknown_name(self):
    with self.assertRaisesRegex(ValueError, "valid names"):
      resnet.get_encoder("resnet19")


class HeadsTest(absltest.TestCase):
  def test_rotation_and_sorting_outputs(self):
    batch = {"ref": jnp.ones((3, 16, 16, 1)), "twin": jnp.zeros((3, 16, 16, 1)), "image": jnp.ones((3, 16, 16, 1))}
    rotation = heads.make_model(_model_config(), num_classes=7)
    logits, out = rotation.apply(helpers.init_variables(rotation, jax.random.key(0), batch), batch)
    self.assertEqual(logits.shape, (3, 7))
    self.assertEqual(out["feature_map"].shape[0], 3)
    sorting = heads.make_model(_model_config())
    z, _ = sorting.apply(helpers.init_variables(sorting, jax.random.key(0), batch), batch)
    self.assertEqual(z.shape, (3,))

  def test_twin_order_matters(self):
    rotation = heads.make_model(_model_config(), num_classes=7)
    a, b = jax.random.normal(jax.random.key(1), (2, 2, 16, 16, 1))
    params = helpers.init_variables(rotation, jax.random.key(0), {"ref": a, "twin": b})
    ab, _ = rotation.apply(params, {"ref": a, "twin": b})
    ba, _ = rotation.apply(params, {"ref": b, "twin": a})
    self.assertGreater(float(jnp.abs(ab - ba).max()), 1e-6)

  def test_dropout_only_when_not_deterministic(self):
    model = heads.make_model(_model_config(dropout=0.5))
    batch = {"image": jax.random.normal(jax.random.key(1), (2, 16, 16, 1))}
    params = helpers.init_variables(model, jax.random.key(0), batch)
    a, _ = model.apply(params, batch, deterministic=False, rngs={"dropout": jax.random.key(1)})
    b, _ = model.apply(params, batch, deterministic=False, rngs={"dropout": jax.random.key(2)})
    c, _ = model.apply(params, batch)
    d, _ = model.apply(params, batch)
    self.assertGreater(float(jnp.abs(a - b).max()), 1e-6)
    np.testing.assert_array_equal(c, d)

  def test_flat_dropout_mask_is_flaxs(self):
    x = jax.random.normal(jax.random.key(1), (2, 5, 6, 3))
    rngs = {"dropout": jax.random.key(4)}
    ours = resnet.Dropout(0.3).apply({}, x, deterministic=False, rngs=rngs)
    flax_ = nn.Dropout(0.3).apply({}, x, deterministic=False, rngs=rngs)
    self.assertTrue(np.any(ours == 0) and np.any(ours != 0))
    np.testing.assert_array_equal(ours, flax_)
    np.testing.assert_array_equal(resnet.Dropout(0.3).apply({}, x, rngs=rngs), x)


class SlicedWeightGradientTest(parameterized.TestCase):
  @parameterized.parameters(
    dict(strides=(1, 1), dilation=(1, 1), size=(3, 3)),
    dict(strides=(2, 2), dilation=(1, 1), size=(3, 3)),
    dict(strides=(1, 1), dilation=(2, 2), size=(3, 3)),
    dict(strides=(2, 2), dilation=(1, 1), size=(1, 1)),
  )
  def test_gradients_are_xlas(self, strides, dilation, size):
    x = jax.random.normal(jax.random.key(0), (64, 12, 12, 3))
    layers = {
      name: nn.Conv(5, size, strides, kernel_dilation=dilation, use_bias=False, **kw)
      for name, kw in (("xla", {}), ("sliced", {"conv_general_dilated": convolution.conv_general_dilated}))
    }
    params = layers["xla"].init(jax.random.key(1), x)
    if jax.local_device_count() > 1:  # the multi-device path keeps XLA's gradient: test the slices on one
      self.skipTest("weight gradient slices only on a single host device")
    self.assertEqual(convolution.weight_grad_slices(x.shape, 0, (1, 2), jax.default_backend(), 1), 4)
    grads = {
      name: jax.grad(lambda p, x, layer=layer: jnp.sum(jnp.sin(layer.apply(p, x))), argnums=(0, 1))(params, x)
      for name, layer in layers.items()
    }
    np.testing.assert_allclose(layers["sliced"].apply(params, x), layers["xla"].apply(params, x), rtol=1e-6)
    for sliced, xla in zip(jax.tree.leaves(grads["sliced"]), jax.tree.leaves(grads["xla"])):
      np.testing.assert_allclose(sliced, xla, atol=1e-5 * np.abs(xla).max())  # float32 rounding of sums in another order

  def test_slices_only_on_one_cpu_device_for_large_maps_and_a_divisor_of_the_batch(self):
    slices = functools.partial(convolution.weight_grad_slices, batch_dim=0, spatial_dims=(1, 2))
    self.assertEqual(slices((64, 32, 32, 16), backend="cpu", devices=1), 4)
    self.assertEqual(slices((48, 32, 32, 16), backend="cpu", devices=1), 3)
    self.assertEqual(slices((63, 32, 32, 16), backend="cpu", devices=1), 3)
    self.assertEqual(slices((12, 32, 32, 16), backend="cpu", devices=1), 1)  # slices of a few rows cost more
    self.assertEqual(slices((67, 32, 32, 16), backend="cpu", devices=1), 1)
    self.assertEqual(slices((64, 4, 4, 128), backend="cpu", devices=1), 1)
    self.assertEqual(slices((64, 32, 32, 16), backend="gpu", devices=1), 1)
    self.assertEqual(slices((64, 32, 32, 16), backend="cpu", devices=2), 1)


class ComputeDtypeTest(absltest.TestCase):
  """config.model.dtype="bfloat16": bfloat16 convolutions, float32 parameters (master weights) and outputs."""

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.batch = {
      "ref": jnp.asarray(rng.uniform(size=(4, 16, 16, 1)), jnp.float32),
      "twin": jnp.asarray(rng.uniform(size=(4, 16, 16, 1)), jnp.float32),
      "angle": jnp.arange(4),
      "axis": jnp.array([0, 1, 2, 0]),
    }
    self.models = {dtype: heads.make_model(_model_config(dtype=dtype), num_classes=7) for dtype in ("float32", "bfloat16")}

  def test_bfloat16_computes_in_bfloat16_and_returns_float32(self):
    params = helpers.init_variables(self.models["float32"], jax.random.key(0), self.batch)["params"]
    logits32, _ = self.models["float32"].apply({"params": params}, self.batch)
    logits16, out16 = self.models["bfloat16"].apply({"params": params}, self.batch)
    encoder_out = self.models["bfloat16"].apply({"params": params}, self.batch["ref"], method="encode")
    self.assertEqual(encoder_out["stages"][0].dtype, jnp.bfloat16)
    self.assertEqual(logits16.dtype, jnp.float32)
    self.assertEqual(out16["feature_map"].dtype, jnp.float32)
    self.assertFalse(np.array_equal(logits16, logits32))  # it did compute in bfloat16
    np.testing.assert_allclose(logits16, logits32, atol=0.05 * float(jnp.max(jnp.abs(logits32))))

  def test_a_bfloat16_train_step_keeps_float32_parameters(self):
    tx, schedule = train.make_optimizer(
      ml_collections.ConfigDict({"name": "adamw", "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0, "grad_clip": 1.0}), 10
    )
    step = functools.partial(train.train_step, loss_fn=losses.get_loss("rotation_nll"))
    states, losses_of = {}, {}
    for dtype, model in self.models.items():
      state = train.init_train_state(model, self.batch, jax.random.key(0), tx)
      states[dtype], metrics = jax.jit(step)(state, self.batch, jax.random.key(1), schedule)
      losses_of[dtype] = float(metrics["loss"])
    self.assertEqual({a.dtype for a in jax.tree.leaves(states["bfloat16"].params)}, {jnp.dtype(jnp.float32)})
    self.assertAlmostEqual(losses_of["bfloat16"], losses_of["float32"], delta=0.02 * losses_of["float32"])

  def test_decoders_return_float32_logits(self):
    for decoder in segmentation.DECODERS:
      config = segment_medaka.get_config("tiny").model
      config.decoder, config.dtype = decoder, "bfloat16"
      model = segmentation.make_model(config, num_classes=2)
      batch = {"image": jnp.ones((1, 32, 32, 1))}
      logits, _ = jax.eval_shape(lambda b, m=model: m.init_with_output(jax.random.key(0), b)[0], batch)
      self.assertEqual((logits.shape, logits.dtype), ((1, 32, 32, 2), jnp.float32), decoder)

  def test_runs_from_before_the_key_compute_in_float32(self):
    self.assertEqual(resnet.get_compute_dtype(_model_config()), jnp.float32)
    with self.assertRaisesRegex(ValueError, "valid names"):
      resnet.get_compute_dtype(_model_config(dtype="float16"))


if __name__ == "__main__":
  absltest.main()
