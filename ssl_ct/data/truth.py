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

from ssl_ct import outputs
from ssl_ct.data import formats
from ssl_ct.errors import InputError

TRUTH_FILE = "truth.json"


def box_of_mask(mask_DxHxW):
  """Tight half-open box {"start", "stop"} around the True voxels, or None when there are none."""
  coords = np.argwhere(mask_DxHxW)
  if len(coords) == 0:
    return None
  return {"start": coords.min(0).tolist(), "stop": (coords.max(0) + 1).tolist()}


def face_moves(outer, inner):
  """["z- by 3", "x+ by 12", ...]: how far each face of box `inner` lies inside box `outer` (faces that do not, left out)."""
  return [
    f"{'zyx'[d]}{sign} by {n}"
    for d in range(3)
    for sign, n in (("-", inner["start"][d] - outer["start"][d]), ("+", outer["stop"][d] - inner["stop"][d]))
    if n > 0
  ]


def _box_problem(box, shape):
  """What is wrong with `box` for a volume of `shape`, or None when it is a valid box."""
  if not isinstance(box, dict) or set(box) - {"start", "stop"} or not {"start", "stop"} <= set(box):
    return f"a box must be {{'start': [z, y, x], 'stop': [z, y, x]}} or null, got {json.dumps(box)[:80]}"
  for key in ("start", "stop"):
    values = box[key]
    if not isinstance(values, list) or len(values) != 3:
      return f"'{key}' must be a list of 3 voxel indices (z, y, x), got {json.dumps(values)[:60]}"
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
      return f"'{key}' must hold whole voxel indices, got {json.dumps(values)[:60]}"
  start, stop = box["start"], box["stop"]
  for axis, (a, b, n) in enumerate(zip(start, stop, shape)):
    if a < 0:
      return f"start {start} is negative along {'zyx'[axis]}"
    if b > n:
      return f"stop {stop} lies past the end of the volume along {'zyx'[axis]} (shape {list(shape)})"
    if a >= b:
      return f"start {start} is not before stop {stop} along {'zyx'[axis]}"
  return None


def check_box(box, shape, where):
  """Validates a {"start", "stop"} box (half-open, whole voxels) against a volume shape."""
  problem = _box_problem(box, shape)
  if problem:
    raise InputError(f"{where}: {problem}; fix the box (half-open [start, stop) voxel ranges inside the volume)")
  return {"start": list(box["start"]), "stop": list(box["stop"])}


def check_boxes(boxes, shapes, where):
  """Validates {name: box or None} against {name: shape}; one InputError naming the first problem and how many there are."""
  problems = [(name, _box_problem(box, shapes[name])) for name, box in boxes.items() if box is not None and name in shapes]
  problems = [(name, p) for name, p in problems if p]
  if problems:
    name, problem = problems[0]
    more = f" (and {len(problems) - 1} more boxes with problems)" if len(problems) > 1 else ""
    raise InputError(f"{where}[{name!r}]: {problem}{more}; fix the file (half-open [start, stop) voxel ranges inside the volume)")
  return boxes


def read_mask(root, entry):
  """The sample mask of a truth entry (bool array), or None when the entry has none.

  `entry["mask"]`: a volume path relative to `root` (a zarr store) or a .npz file with key "mask".
  """
  if not entry or "mask" not in entry or not root:
    return None
  path = os.path.join(root, entry["mask"])
  if path.endswith(".npz"):
    with np.load(path) as f:
      return f["mask"].astype(bool)
  return formats.open_volume(path).read().astype(bool)


def write_truth(folder, entries):
  """Writes truth.json atomically."""
  outputs.write_json(os.path.join(folder, TRUTH_FILE), entries)


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
    raise InputError(f"{path}: expected {{name: {{'box': {{'start': [...], 'stop': [...]}} or null}}}}; fix or remove the file")
  return truth
