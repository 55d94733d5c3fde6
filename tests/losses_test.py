"""Losses by hand on tiny arrays, invariances, finite gradients, jit and no-jit alike."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from ssl_ct import losses


class RotationNllTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_value_by_hand(self):
    logits = jnp.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    loss, metrics = self.variant(losses.rotation_nll)(logits, jnp.array([0, 1]))
    # p(class) = 0.5 and 0.25: NLL = (ln 2 + ln 4) / 2; argmax = [0, 0] -> one right.
    np.testing.assert_allclose(loss, (np.log(2) + np.log(4)) / 2, rtol=1e-6)
    np.testing.assert_allclose(metrics["rot_acc"], 0.5)

  def test_accuracy_by_axis_by_hand(self):
    logits = jnp.eye(3)[jnp.array([0, 1, 2, 2, 1])]  # predicted classes 0 1 2 2 1
    metrics = losses.accuracy_by_axis(logits, jnp.array([0, 1, 0, 2, 0]), jnp.array([0, 0, 1, 1, 0]))
    # z: pairs 0, 1, 4 -> right, right, wrong; y: pairs 2, 3 -> wrong, right; x: none -> 0.
    np.testing.assert_allclose([metrics["rot_acc_z"], metrics["rot_acc_y"], metrics["rot_acc_x"]], [2 / 3, 0.5, 0.0], rtol=1e-6)

  def test_label_smoothing(self):
    logits = jnp.array([[2.0, 0.0, 0.0]])
    loss, _ = losses.rotation_nll(logits, jnp.array([0]), label_smoothing=0.3)
    logp = jax.nn.log_softmax(logits)[0]
    expected = -(0.8 * logp[0] + 0.1 * logp[1] + 0.1 * logp[2])
    np.testing.assert_allclose(loss, expected, rtol=1e-6)

  def test_finite_gradient(self):
    grad = jax.grad(lambda x: losses.rotation_nll(x, jnp.array([1, 2]))[0])(jnp.zeros((2, 7)))
    self.assertTrue(np.all(np.isfinite(grad)))
    np.testing.assert_allclose(grad.sum(), 0.0, atol=1e-6)  # softmax gradients sum to zero per row


class RankingTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_perfect_order_with_margin_is_zero(self):
    loss, metrics = self.variant(losses.pairwise_ranking)(jnp.array([0.0, 0.2, 0.4]), jnp.array([3, 7, 9]))
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)
    np.testing.assert_allclose(metrics["mean_displacement"], 0.0)

  def test_reversed_order_by_hand(self):
    loss, metrics = losses.pairwise_ranking(jnp.array([0.4, 0.2, 0.0]), jnp.array([0, 1, 2]), margin=0.2)
    # Pairs (i > j): (1,0): 0.2 - (-0.2) = 0.4; (2,0): 0.2 + 0.4 = 0.6; (2,1): 0.4 -> mean 1.4 / 3.
    np.testing.assert_allclose(loss, 1.4 / 3, rtol=1e-6)
    # argsort(position) = [0, 1, 2], argsort(z) = [2, 1, 0] -> (2 + 0 + 2) / 3.
    np.testing.assert_allclose(metrics["mean_displacement"], 4 / 3, rtol=1e-6)

  def test_margin_violation_within_order(self):
    loss, _ = losses.pairwise_ranking(jnp.array([0.0, 0.1]), jnp.array([0, 1]), margin=0.2)
    np.testing.assert_allclose(loss, 0.1, rtol=1e-6)

  def test_finite_gradient_with_ties(self):
    grad = jax.grad(lambda z: losses.pairwise_ranking(z, jnp.array([0, 0, 1]))[0])(jnp.zeros(3))
    self.assertTrue(np.all(np.isfinite(grad)))


class RegistryTest(parameterized.TestCase):
  def test_unknown_name_lists_valid_ones(self):
    with self.assertRaisesRegex(ValueError, "valid names: rotation_nll, pairwise_ranking"):
      losses.get_loss("simclr")

  def test_adapters_pick_batch_arrays(self):
    loss, _ = losses.get_loss("rotation_nll")(jnp.zeros((2, 7)), {"angle": jnp.array([0, 3]), "axis": jnp.array([0, 2])})
    np.testing.assert_allclose(loss, np.log(7), rtol=1e-6)


if __name__ == "__main__":
  absltest.main()
