r"""Rotation localization of one large volume: seconds per volume, where the time goes, and the
curves of the shared-encoding scorer against the pair-by-pair one (same run, same model), and the
slice preparation with each slice normalized and anti-aliased once against every input prepared
from its raw slice.

  python experiments/bench_localize.py                # 504^3 (the paper's size), demo network
  python experiments/bench_localize.py --size=224     # quicker

The volume is a demo synthetic Xenopus volume (112^3) resampled to --size^3, so the field of
view and the sample are where a real reconstruction has them. The model is the demo network
with random weights: the time does not depend on what the network learned.
"""

import argparse
import tempfile
import time

import jax
import numpy as np
import scipy.ndimage

from ssl_ct import fusion, localize_rotation, tasks, train
from ssl_ct.configs import rotation_xenopus
from ssl_ct.data import fov, intensity, prepare
from ssl_ct.data.volume import ArrayVolume


def _volume(size):
  config = rotation_xenopus.get_config("demo")
  config.data.synthetic.num_volumes = 1
  dataset = prepare.load_dataset(config.data, tempfile.mkdtemp(), progress=False)
  small = dataset.volumes[0].read()
  big = scipy.ndimage.zoom(small, size / small.shape[0], order=1).astype(np.float32)
  volume = ArrayVolume(big, name=f"xenopus_{size}")
  volume_fov = fov.estimate_fov(volume)
  return config, volume, volume_fov, intensity.intensity_range(volume, fov=volume_fov)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--size", type=int, default=504)
  parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True, help="also time the pair-by-pair scorer")
  args = parser.parse_args()
  config, volume, volume_fov, value_range = _volume(args.size)
  task = tasks.get_task(config)
  model = task.make_model()
  batch = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), task.example_batch(2))
  state_params = model.init({"params": jax.random.key(0)}, batch, deterministic=True)["params"]
  params = train.host_params(jax.device_put(state_params))
  kw = {"size": config.data.slice_size, "offsets": tuple(config.localize.twin_offsets), "seed": config.seed}
  print(
    f"{volume.shape} volume, {config.model.name} width {config.model.width}, {config.data.slice_size} px, {jax.device_count()} device(s)"
  )

  prep_s = {}
  for shared in (False, True):  # every input from its raw slice (the baseline), or each slice prepared once
    start = time.perf_counter()
    pairs = sum(
      1 for axis in range(3) for _ in localize_rotation._pairs_along(volume, volume_fov, value_range, axis, **kw, shared=shared)
    )
    prep_s[shared] = time.perf_counter() - start
  print(f"slice preparation alone (read, normalize, rotate, resize):  {prep_s[True]:7.1f} s for {pairs} pairs", end="")
  print(f" ({prep_s[False]:.1f} s preparing every input from its raw slice: {prep_s[False] / prep_s[True]:.2f}x)")

  zero = list(config.data.angles_deg).index(0)
  batch, n, twins = config.localize.batch_size, config.data.slice_size, 2 * len(set(kw["offsets"]))
  scorer = localize_rotation.make_pair_scorer(model, zero)
  scorer(params, np.zeros((max(1, batch // twins), twins + 1, n, n, 1), np.float32)).block_until_ready()  # compile
  start = time.perf_counter()
  shared = localize_rotation.certainty_curves(
    volume, volume_fov, value_range, scorer=scorer, params=params, **kw, batch_size=batch
  )
  shared_s = time.perf_counter() - start
  print(f"shared encodings (each slice input encoded once):          {shared_s:7.1f} s per volume")
  if args.baseline:
    p0_fn = localize_rotation.make_p0_fn(model, zero)
    p0_fn(params, *[np.zeros((batch, n, n, 1), np.float32)] * 2).block_until_ready()  # compile
    start = time.perf_counter()
    pairwise = localize_rotation.certainty_curves_pairwise(
      volume, volume_fov, value_range, p0_fn=p0_fn, params=params, **kw, batch_size=batch
    )
    pair_s = time.perf_counter() - start
    diff = max(float(np.nanmax(np.abs(shared[a] - pairwise[a]))) for a in range(3))
    same = localize_rotation.box_from_curves(shared, **_rule(config)) == localize_rotation.box_from_curves(
      pairwise, **_rule(config)
    )
    print(f"pair by pair (both slices of every pair encoded):          {pair_s:7.1f} s per volume")
    print(f"speed-up {pair_s / shared_s:.2f}x; largest difference between the curves {diff:.2e}; same box: {same}")


def _rule(config):
  """The curve rule alone, as select_fusion.py replays it (no trim, no refinement: both act on the box after)."""
  rule = tasks._rule(config.localize, "min_accuracy_over_chance", "model", "twin_offsets", "batch_size", *fusion.KEYS)
  return {"floor": 1 / len(config.data.angles_deg), **rule}


if __name__ == "__main__":
  main()
