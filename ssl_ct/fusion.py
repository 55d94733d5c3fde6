"""Trimming a certainty box to the sample where it took in what lies beside it (packing, a holder).

A pretext model reads a slice's orientation off whatever structure it holds: fibrous packing or
a holder beside the sample score above chance too, unsteadily, and the certainty box B takes
them in (README: packed specimens). Two other boxes say where the sample itself is: the core C,
the same curves cut strictly (a higher level, a lower smoothing rank: only the steady
plateau), which lies inside the sample but misses the parts whose certainty ramps up at the
edges; and the threshold baseline's box O (Otsu, largest component), which finds dense tissue
but can fall short of faint parts or take in a bright tube. Each face of B moves in to the
outer of C's and O's faces and never out: the box is B ∩ (C ∪ O), so a face is trimmed only
where both the strict curve and the threshold say the sample has ended.
"""

from ssl_ct.data import truth


def trim_box(box, core, threshold, shape):
  """B ∩ bounding(C ∪ O) for boxes {"start", "stop"} (half-open); `box` unchanged when any is None,
  when it fills the field (`shape`), or when the trimmed box would be empty."""
  if box is None or core is None or threshold is None or box == {"start": [0, 0, 0], "stop": list(shape)}:
    return box
  start = [max(b, min(c, t)) for b, c, t in zip(box["start"], core["start"], threshold["start"])]
  stop = [min(b, max(c, t)) for b, c, t in zip(box["stop"], core["stop"], threshold["stop"])]
  if any(e <= s for s, e in zip(start, stop)):
    return box
  return {"start": [int(s) for s in start], "stop": [int(e) for e in stop]}


KEYS = ("trim", "trim_level", "trim_smooth_percentile")  # config.localize keys of the trimming


def describe(before, after):
  """What trim_box moved, for the report: "trimmed to ...: y- by 12, x+ by 30 voxels", or ""."""
  moved = truth.face_moves(before, after)
  return f"trimmed to the steady core and the threshold box: {', '.join(moved)} voxels" if moved else ""
