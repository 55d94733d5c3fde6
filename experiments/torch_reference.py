"""The rotation task's network and train step in PyTorch, for side-by-side timing only
(experiments/bench_train.py --torch). Not part of ssl_ct, and torch is not one of its
dependencies: `pip install torch --index-url https://download.pytorch.org/whl/cpu`.

Same architecture and parameter count as ssl_ct/models (GroupNorm ResNet, small or standard
stem, 1x1 embed conv after dropout, the siamese head on the concatenated feature maps), AdamW
with gradient clipping, fp32, channels-last images in and out of the same shapes.
"""

import torch
from torch import nn


def _norm(channels):
  return nn.GroupNorm(min(32, max(1, channels // 4)), channels)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin, filters, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, filters, 3, stride, 1, bias=False)
    self.norm1 = _norm(filters)
    self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
    self.norm2 = _norm(filters)
    self.proj = None
    if stride != 1 or cin != filters:
      self.proj = nn.Sequential(nn.Conv2d(cin, filters, 1, stride, bias=False), _norm(filters))

  def forward(self, x):
    y = self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(x)))))
    return torch.relu((x if self.proj is None else self.proj(x)) + y)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, filters, stride):
    super().__init__()
    out = filters * 4
    self.body = nn.Sequential(
      nn.Conv2d(cin, filters, 1, bias=False),
      _norm(filters),
      nn.ReLU(),
      nn.Conv2d(filters, filters, 3, stride, 1, bias=False),
      _norm(filters),
      nn.ReLU(),
      nn.Conv2d(filters, out, 1, bias=False),
      _norm(out),
    )
    self.proj = None
    if stride != 1 or cin != out:
      self.proj = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), _norm(out))

  def forward(self, x):
    return torch.relu((x if self.proj is None else self.proj(x)) + self.body(x))


STAGES = {"resnet18": ([2, 2, 2, 2], BasicBlock), "resnet34": ([3, 4, 6, 3], BasicBlock), "resnet50": ([3, 4, 6, 3], Bottleneck)}


class Encoder(nn.Module):
  def __init__(self, name, width, small_stem, dropout):
    super().__init__()
    sizes, block = STAGES[name]
    if small_stem:
      self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 2, 1, bias=False), _norm(width), nn.ReLU())
    else:
      self.stem = nn.Sequential(nn.Conv2d(1, width, 7, 2, 3, bias=False), _norm(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    blocks, cin = [], width
    for stage, count in enumerate(sizes):
      for i in range(count):
        blocks.append(block(cin, width * 2**stage, 2 if stage > 0 and i == 0 else 1))
        cin = width * 2**stage * block.expansion
    self.stages = nn.Sequential(*blocks)
    self.dropout = nn.Dropout(dropout)
    self.embed = nn.Conv2d(cin, cin, 1)
    self.channels = cin

  def forward(self, x):
    return self.embed(self.dropout(self.stages(self.stem(x))))


class RotationNet(nn.Module):
  def __init__(self, name, width, small_stem, dropout, head_hidden, classes, slice_size):
    super().__init__()
    self.encoder = Encoder(name, width, small_stem, dropout)
    with torch.no_grad():
      side = self.encoder(torch.zeros(1, 1, slice_size, slice_size)).shape[-1]
    self.mix = nn.Conv2d(2 * self.encoder.channels, head_hidden, 1)
    self.hidden = nn.Linear(head_hidden * side * side, head_hidden)
    self.out = nn.Linear(head_hidden, classes)

  def forward(self, ref, twin):
    maps = self.encoder(torch.cat([ref, twin]))  # one pass over both slices, as the JAX model
    ref_map, twin_map = maps.chunk(2)
    pair = torch.relu(self.mix(torch.cat([ref_map, twin_map], dim=1)))
    return self.out(torch.relu(self.hidden(pair.flatten(1))))


def make_step(config):
  """(model, step(ref_BxNxNx1, twin_BxNxNx1, angle_B) -> loss) for the rotation config."""
  m = config.model
  model = RotationNet(
    m.name, m.width, m.small_stem, m.dropout, m.head_hidden, len(config.data.angles_deg), config.data.slice_size
  )
  opt = torch.optim.AdamW(model.parameters(), lr=config.opt.lr, weight_decay=config.opt.weight_decay)
  model.train()

  def step(ref, twin, angle):
    opt.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(ref, twin), angle)
    loss.backward()
    if config.opt.grad_clip:
      nn.utils.clip_grad_norm_(model.parameters(), config.opt.grad_clip)
    opt.step()
    return loss

  return model, step


def parameter_count(model):
  return sum(p.numel() for p in model.parameters())
