"""ResNet shapes for every depth (jax.eval_shape: no compute), task heads, dropout switch."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest, parameterized

from ssl_ct.models import heads, resnet


def _model_config(name="resnet_tiny", dropout=0.0):
  return ml_collections.ConfigDict(
    {"name": name, "width": 4, "dropout": dropout, "small_stem": True, "head_hidden": 8, "output_stride": 32}
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
    logits, out = rotation.apply(rotation.init(jax.random.key(0), batch), batch)
    self.assertEqual(logits.shape, (3, 7))
    self.assertEqual(out["feature_map"].shape[0], 3)
    sorting = heads.make_model(_model_config())
    z, _ = sorting.apply(sorting.init(jax.random.key(0), batch), batch)
    self.assertEqual(z.shape, (3,))

  def test_twin_order_matters(self):
    rotation = heads.make_model(_model_config(), num_classes=7)
    a, b = jax.random.normal(jax.random.key(1), (2, 2, 16, 16, 1))
    params = rotation.init(jax.random.key(0), {"ref": a, "twin": b})
    ab, _ = rotation.apply(params, {"ref": a, "twin": b})
    ba, _ = rotation.apply(params, {"ref": b, "twin": a})
    self.assertGreater(float(jnp.abs(ab - ba).max()), 1e-6)

  def test_dropout_only_when_not_deterministic(self):
    model = heads.make_model(_model_config(dropout=0.5))
    batch = {"image": jax.random.normal(jax.random.key(1), (2, 16, 16, 1))}
    params = model.init(jax.random.key(0), batch)
    a, _ = model.apply(params, batch, deterministic=False, rngs={"dropout": jax.random.key(1)})
    b, _ = model.apply(params, batch, deterministic=False, rngs={"dropout": jax.random.key(2)})
    c, _ = model.apply(params, batch)
    d, _ = model.apply(params, batch)
    self.assertGreater(float(jnp.abs(a - b).max()), 1e-6)
    np.testing.assert_array_equal(c, d)


if __name__ == "__main__":
  absltest.main()
