"""Experiment configs: `configs/<task>_<data>.py` each define `get_config(arg=None)`."""
