"""Ground truth next to the volumes: `truth.json` with a box per volume, plus mask/label paths.

Format (boxes are half-open voxel ranges in the volume's own (z, y, x) coordinates):
  {"<name>": {"box": {"start": [z, y, x], "stop": [z, y, x]} | null,
              "mask": "truth/<name>_mask.zarr", "labels": "truth/<name>_labels.zarr",
              "label_names": {"0": "background", ...}}}
Only "box" is required; users with hand-made boxes write just that.
"""

import json
import os

import numpy as np

from ssl_ct.errors import InputError

TRUTH_FILE = "truth.json"


def box_of_mask(mask_DxHxW):
  """Tight half-open box {"start", "stop"} around the True voxels, or None when there are none."""
  coords = np.argwhere(mask_DxHxW)
  if len(coords) == 0:
    return None
  return {"start": coords.min(0).tolist(), "stop": (coords.max(0) + 1).tolist()}


def check_box(box, shape, where):
  """Validates a {"start", "stop"} box against a volume shape."""
  try:
    start, stop = [int(v) for v in box["start"]], [int(v) for v in box["stop"]]
  except (KeyError, TypeError, ValueError) as e:
    raise InputError(f"{where}: a box must be {{'start': [z, y, x], 'stop': [z, y, x]}}, got {box!r}") from e
  if len(start) != 3 or len(stop) != 3 or any(not 0 <= a < b <= n for a, b, n in zip(start, stop, shape)):
    raise InputError(f"{where}: box {start}..{stop} is empty or outside the volume shape {list(shape)}")
  return {"start": start, "stop": stop}


def write_truth(folder, entries):
  """Writes truth.json atomically."""
  path = os.path.join(folder, TRUTH_FILE)
  tmp = path + ".partial"
  with open(tmp, "w") as f:
    json.dump(entries, f, indent=1)
  os.replace(tmp, path)


def read_truth(folder):
  """{name: entry} from `folder`/truth.json, or {} when there is none."""
  path = os.path.join(folder, TRUTH_FILE)
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      truth = json.load(f)
  except json.JSONDecodeError as e:
    raise InputError(f"{path}: not valid JSON ({e}); fix or remove the file") from e
  if not isinstance(truth, dict) or not all(isinstance(v, dict) and "box" in v for v in truth.values()):
    raise InputError(f"{path}: expected {{name: {{'box': {{'start': [...], 'stop': [...]}}}}}}")
  return truth
