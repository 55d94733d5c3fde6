"""Flax linen models: ResNet encoders and the task heads built on them."""
