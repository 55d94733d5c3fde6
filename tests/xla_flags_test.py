"""ssl_ct's default XLA flags: which are added, that they take effect, that results agree."""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from ssl_ct import xla_flags

_FLAG = "xla_cpu_experimental_ynn_fusion_type"


def _conv(x_BxHxWxC, w_3x3xCxD):
  return jax.lax.conv_general_dilated(x_BxHxWxC, w_3x3xCxD, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


class FlagsToAddTest(absltest.TestCase):
  def test_adds_missing_flags_after_the_users(self):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    with mock.patch.object(xla_flags, "_jaxlib_version", return_value=(0, 10)):
      self.assertEqual(xla_flags.apply(env), [f"--{_FLAG}=dot"])
    self.assertEqual(env["XLA_FLAGS"], f"--xla_force_host_platform_device_count=2 --{_FLAG}=dot")

  def test_keeps_the_users_value(self):
    self.assertEqual(xla_flags.flags_to_add(f"--{_FLAG}=individual_dot", (0, 10)), [])
    self.assertEqual(xla_flags.flags_to_add("", (0, 10)), [f"--{_FLAG}=dot"])

  def test_none_for_an_untested_jaxlib(self):
    self.assertEqual(xla_flags.flags_to_add("", (0, 11)), [])
    self.assertEqual(xla_flags.flags_to_add("", None), [])

  def test_turned_off(self):
    env = {"SSL_CT_XLA_DEFAULTS": "off"}
    self.assertEqual(xla_flags.apply(env), [])
    self.assertNotIn("XLA_FLAGS", env)


class EffectTest(absltest.TestCase):
  """This process imported ssl_ct before JAX started, as every ssl_ct program does."""

  def setUp(self):
    super().setUp()
    if jax.devices()[0].platform != "cpu" or not xla_flags.flags_to_add("", xla_flags._jaxlib_version()):
      self.skipTest("the flags are CPU flags for the jaxlib versions in xla_flags._JAXLIB_VERSIONS")
    rng = np.random.default_rng(0)
    self.x = jnp.asarray(rng.normal(size=(32, 16, 16, 32)).astype(np.float32))
    self.w = jnp.asarray(rng.normal(size=(3, 3, 32, 32)).astype(np.float32))

  def test_convolutions_leave_ynnpack(self):
    ours = jax.jit(_conv).lower(self.x, self.w).compile().as_text()
    ynn = jax.jit(_conv, compiler_options={_FLAG: "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"})
    self.assertNotIn("__ynn_fusion", ours)
    self.assertIn("__ynn_fusion", ynn.lower(self.x, self.w).compile().as_text())

  def test_results_agree_with_ynnpack_convolutions(self):
    loss = lambda x, w: jnp.sum(_conv(x, w) ** 2)  # noqa: E731
    ours = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(self.x, self.w)
    ynn = jax.jit(
      jax.value_and_grad(loss, argnums=(0, 1)), compiler_options={_FLAG: "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"}
    )(self.x, self.w)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ynn)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4 * float(jnp.max(jnp.abs(b))))


if __name__ == "__main__":
  absltest.main()
