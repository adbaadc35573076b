#!/usr/bin/env bash
# The GPU measurements of issue #11 as one command on a lent GPU machine (BENCHMARKS.md, "GPU
# (wgpu/Vulkan) on an NVIDIA H200"): impasto's iteration beside PyTorch CUDA's (TF32 off and on), a
# per-kernel breakdown, VGG-19 at 2048² with peak GPU memory, and the default 512 px run end to end.
#
# Usage: docs/gpu/measure.sh IMPASTO TORCH_BENCH_DIR OUT_DIR [CONV_RATE] [TUNING] [LBFGS_STEP]
#   IMPASTO          a stripped release binary built on the developer machine
#   CONV_RATE        optional: the stripped `conv_rate` example of impasto-gpu (cargo build --release
#                    -p impasto-gpu --example conv_rate), each VGG-16 layer's convolution in the
#                    Winograd form where it applies (the default), then directly in each of the GEMM's forms (8×8 outputs per invocation, the same with two staging buffers or
#                    the next block prefetched into registers, 4×4, 8×8 in 128×128 and 64×128
#                    tiles), with the input staged 2 channels × 9 taps at a time or a value at a
#                    time, with and without naga's loop counters
#   TUNING           optional: the stripped `tuning` example of impasto-gpu, a VGG-16 evaluation with
#                    each product's GEMM form chosen by timing against the default forms (the
#                    per-product table is also in the `--layers` bench's "gpu_tuned" lines)
#   LBFGS_STEP       optional: the stripped `lbfgs_step` example of impasto (cargo build --release
#                    -p impasto --example lbfgs_step), one L-BFGS step with the history on the GPU
#                    (100 pairs and 1) and on the host (1 pair: the host's passes alone)
#   TORCH_BENCH_DIR  a folder holding ../shared/bench/torch_vgg_iter.py (copied, not committed)
#   OUT_DIR          where the logs go (the device tool's $OUT): one archive, measure.tgz, of the
#                    folder logs/ (the device tool returns at most 8 files), and steps.txt beside it
# The first bench (`--layers`) also prints the GPU's ceilings ("kind": "gpu_ceilings": fma in
# registers, the GEMM's inner step alone, a copy), the yardsticks for its per-kernel times.
# The numbers issue #11 asks for come first (the iterations beside PyTorch's, VGG-19 at 2048², the
# default run end to end), the diagnostics (`conv_rate`, `tuning`) after them. Each step has its own
# time limit, cut to what is left of IMPASTO_MEASURE_SECONDS (default 570, under the device tool's
# 600 s a command), so that a slow step cannot take the rest with it and the script ends before the
# command's limit with every log it wrote; a step with under 10 s left is skipped and says so. The
# machine needs a Vulkan loader (libvulkan1) and its driver's Vulkan ICD, PyTorch with CUDA and
# safetensors.
set -u
bin=$1 bench=$2 top=$3 conv_rate=${4:-} tuning=${5:-} lbfgs_step=${6:-}
here=$(cd "$(dirname "$0")" && pwd)
out=$top/logs
# The adapter: the first hardware GPU (gpu:N picks another, or a software one to try the script).
dev=${IMPASTO_MEASURE_DEVICE:-gpu}
mkdir -p "$out"
end=$((SECONDS + ${IMPASTO_MEASURE_SECONDS:-570}))
step() { # name seconds command...
    local name=$1 limit=$2
    shift 2
    local left=$((end - SECONDS))
    if [ "$limit" -gt "$left" ]; then
        limit=$left
    fi
    if [ "$limit" -lt 10 ]; then
        echo "== $name: skipped, ${left} s left" | tee -a "$out/steps.txt"
        return
    fi
    echo "== $name (limit ${limit} s)" | tee -a "$out/steps.txt"
    /usr/bin/time -v -o "$out/$name.time" timeout "$limit" "$@" >"$out/$name.out" 2>"$out/$name.err"
    echo "rc=$?" | tee -a "$out/steps.txt"
}
# Samples the GPU's used memory every 50 ms while a command runs (context included), for impasto and
# PyTorch alike: cuDNN's autotuning makes PyTorch's own max_memory_allocated a measure of the card.
sampled() { # name seconds command...
    local name=$1
    if ! command -v nvidia-smi >/dev/null; then
        step "$@"
        return
    fi
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 >"$out/$name.mem" &
    local smi=$!
    step "$@"
    kill "$smi"
    sort -n "$out/$name.mem" | tail -1 | sed 's/$/ MiB peak/' | tee -a "$out/steps.txt"
}

date -u >"$out/date.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
# The UUIDs nvidia-smi gives the cards, beside those `impasto devices` reads from Vulkan: they should
# be the same, as CUDA_VISIBLE_DEVICES=GPU-… matching relies on.
nvidia-smi -L >>"$out/gpu.txt" 2>&1
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-(unset)}" >>"$out/gpu.txt"
step devices_inherited 30 "$bin" devices
# The measurements take the first hardware GPU whatever the machine's variable says; the two steps
# after `devices` try the variable's matching on its own.
unset CUDA_VISIBLE_DEVICES
step devices 30 "$bin" devices
uuid=$(nvidia-smi --query-gpu=uuid --format=csv,noheader 2>/dev/null | head -1)
step devices_visible_index 30 env CUDA_VISIBLE_DEVICES=0 "$bin" devices
step devices_visible_uuid 30 env CUDA_VISIBLE_DEVICES="$uuid" "$bin" devices

# PyTorch's VGG-16 timing needs a weights file of the right shapes; the values do not change it.
work=$(mktemp -d)
mkdir -p "$work/bench" "$work/models"
cp "$bench/torch_vgg_iter.py" "$work/bench/"
python3 - "$work/models/vgg16-conv-imagenet.safetensors" <<'PY'
import sys, torch
from safetensors.torch import save_file
cfg, idx, cin, t = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512], [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24], 3, {}
for c, i in zip(cfg, idx):
    t[f'features.{i}.weight'] = torch.randn(c, cin, 3, 3) * 0.05
    t[f'features.{i}.bias'] = torch.zeros(c)
    cin = c
save_file(t, sys.argv[1])
PY
torch=(python3 "$work/bench/torch_vgg_iter.py" --device cuda)

step impasto_vgg16_512 150 "$bin" bench --device "$dev" --sizes 512 --model vgg16 --reps 5 --warmup 2 --layers --json
step torch_vgg16_tf32off 90 "${torch[@]}" --tf32 off --model vgg16 --sizes 512x512 1024x1024 --reps 10 --warmup 3
step torch_vgg16_tf32on 90 "${torch[@]}" --tf32 on --model vgg16 --sizes 512x512 1024x1024 --reps 10 --warmup 3
sampled torch_vgg19_2048_tf32off 100 "${torch[@]}" --tf32 off --model vgg19 --sizes 2048x2048 --reps 3 --warmup 1
sampled torch_vgg19_2048_tf32on 60 "${torch[@]}" --tf32 on --model vgg19 --sizes 2048x2048 --reps 3 --warmup 1
# The network's own memory in PyTorch: the same iteration with cuDNN's autotuning off.
sampled torch_vgg19_2048_noautotune_off 60 python3 "$here/torch_memory.py" "$work/bench" vgg19 2048 off
sampled torch_vgg19_2048_noautotune_on 60 python3 "$here/torch_memory.py" "$work/bench" vgg19 2048 on
# The default run end to end (built-in model: the same network and kernels as the full weights).
sampled e2e_512 120 "$bin" docs/astronaut_starry.png docs/chelsea_scream.png -o "$out/e2e.png" --device "$dev" --size 512 --weights builtin
# VGG-19 at 2048²: its tuning alone is some 20-30 evaluations of this size, hence the longer limit.
sampled impasto_vgg19_2048 240 "$bin" bench --device "$dev" --sizes 2048 --model vgg19 --reps 3 --warmup 1 --json
rm -rf "$work"
# The default 1024 px run (two scales), the Wasserstein loss's iteration, the L-BFGS step.
sampled e2e_1024 90 "$bin" docs/astronaut_starry.png docs/chelsea_scream.png -o "$out/e2e_1024.png" --device "$dev" --size 1024 --weights builtin
step impasto_vgg16_512_w2 60 "$bin" bench --device "$dev" --sizes 512 --model vgg16 --reps 10 --warmup 2 --style-loss w2 --json
if [ -n "$lbfgs_step" ]; then
    step lbfgs_step_gpu 60 "$lbfgs_step" "$dev" 512,1024 100 9
    step lbfgs_step_gpu_1 60 "$lbfgs_step" "$dev" 512,1024 1 9
    step lbfgs_step_host_1 30 "$lbfgs_step" cpu 512 1 9
fi
# The diagnostics, in what time is left.
if [ -n "$conv_rate" ]; then
    step conv_rate 90 "$conv_rate" "$dev" 512 5
fi
if [ -n "$tuning" ]; then
    step tuning 60 "$tuning" "$dev" 512 5
fi
tar -C "$top" -czf "$top/measure.tgz" logs && cp "$out/steps.txt" "$top/" && rm -rf "$out"
