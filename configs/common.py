"""Helpers shared by the configs: parsing the `:arg` suffix of `--config=configs/x.py:arg`."""

import ml_collections


def _parse_value(text, default):
  if isinstance(default, bool):
    if text.lower() not in ("true", "false", "1", "0", ""):
      raise ValueError(f"config arg expects a boolean, got {text!r}")
    return text.lower() in ("true", "1", "")
  if isinstance(default, int):
    return int(text)
  if isinstance(default, float):
    return float(text)
  return text


def parse_arg(arg, **spec):
  """Parses 'key=value,flag' into a locked ConfigDict with the defaults in `spec`.

  A bare `flag` sets a boolean to True. Unknown keys raise ValueError naming the valid ones,
  e.g. `parse_arg("variant=r18,demo", variant="r50", demo=False)`.
  """
  parsed = ml_collections.ConfigDict(spec)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    key = key.strip()
    if key not in spec:
      raise ValueError(f"unknown config arg {key!r}; valid args: {', '.join(sorted(spec))}")
    if "=" not in item and not isinstance(spec[key], bool):
      raise ValueError(f"config arg {key!r} needs a value: {key}=...")
    parsed[key] = _parse_value(value.strip(), spec[key]) if "=" in item else True
  parsed.lock()
  return parsed
