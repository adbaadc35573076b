#!/usr/bin/env python3
"""PyTorch's VGG iteration as ../shared/bench/torch_vgg_iter.py times it, with cuDNN's autotuning off.

With `cudnn.benchmark` on (as that script sets it) cuDNN tries algorithms whose workspaces fill the
card, so its `max_memory_allocated` measures the card rather than the network. This prints the
network's own peak (allocated and reserved) and the median of three iterations after one warm-up.

Usage: torch_memory.py BENCH_DIR MODEL SIZE TF32
  BENCH_DIR  the folder holding torch_vgg_iter.py (its ../models holds the VGG-16 weights it reads)
  MODEL      vgg16 or vgg19;  SIZE  the square image's side;  TF32  on or off
"""
import json
import statistics
import sys
import time

import torch

sys.path.insert(0, sys.argv[1])
import torch_vgg_iter as bench  # noqa: E402

model, size, tf32 = sys.argv[2], int(sys.argv[3]), sys.argv[4] == 'on'
torch.backends.cudnn.benchmark = False
torch.backends.cudnn.allow_tf32 = tf32
torch.backends.cuda.matmul.allow_tf32 = tf32
net = bench.build(model).cuda()
torch.manual_seed(0)
x0 = (torch.randn(1, 3, size, size) * 50.0).cuda()
torch.cuda.reset_peak_memory_stats()
times = []
for _ in range(4):
    x = x0.clone().requires_grad_(True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    net(x).square().mean().backward()
    torch.cuda.synchronize()
    times.append(time.perf_counter() - start)
print(json.dumps({'model': model, 'size': size, 'tf32': 'on' if tf32 else 'off', 'cudnn_benchmark': False,
                  'seconds_per_iteration': statistics.median(times[1:]),
                  'max_memory_allocated': torch.cuda.max_memory_allocated(),
                  'max_memory_reserved': torch.cuda.max_memory_reserved(),
                  'torch': torch.__version__}), flush=True)
