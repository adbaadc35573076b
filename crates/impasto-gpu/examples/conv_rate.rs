//! The rate of the 3×3 convolution kernel at every VGG-16 layer shape, in each form of the tiled
//! GEMM (`GemmTile`: 8×8 outputs per invocation, the same with two staging buffers or with the next
//! block prefetched into registers, 4×4, 8×8 in 128×128 or 64×128 tiles), with the
//! input staged 2 channels × 9 taps at a time (the default) or a value at a time
//! (`GpuOptions::im2col_per_value`), with and without 32×32 tiles for the layers with few 64×64
//! ones (`SmallTiles`), and with and without naga's per-loop iteration counters: what the GEMM itself
//! reaches on an adapter, apart from the rest of an iteration, printed after the adapter's ceilings
//! (`Gpu::ceilings`: fma in registers, the GEMM's inner step alone, a copy). Those all compute
//! every convolution directly (`GpuOptions::direct_convolutions`); the first configuration is the
//! default, the Winograd F(4×4, 3×3) form where a layer takes it (its GFLOP/s count the direct
//! form's multiplies).
//!
//! `cargo run --release -p impasto-gpu --example conv_rate -- [ADAPTER] [SIZE] [REPS]` (defaults:
//! `gpu`, the first hardware adapter, or `gpu:N` for any of `impasto devices`; 512; 5). One line
//! per layer, direction and form: milliseconds per call (median; on the GPU's timestamps where it
//! has them) and GFLOP/s (`2·c_in·c_out·9·h·w`), then the totals.

#![allow(clippy::print_stdout)] // a measurement tool: its report is its output

mod common;

use impasto_gpu::{GemmTile, Gpu, GpuOptions, SmallTiles, Tune};

/// (c_in, c_out, downsamplings before the layer) of VGG-16's convolutions up to conv5_1.
const VGG16: [(usize, usize, u32); 11] = [
    (3, 64, 0),
    (64, 64, 0),
    (64, 128, 1),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 2),
    (256, 256, 2),
    (256, 512, 3),
    (512, 512, 3),
    (512, 512, 3),
    (512, 512, 4),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (adapter, choice, size, reps) = common::args(5)?;
    println!("adapter {adapter}, {size}x{size}, median of {reps}");
    // Each GEMM form without naga's loop counters (what runs), then with them (wgpu's default); the
    // 8×8 forms also with the convolution's input decoded a value at a time (`im2col_per_value`),
    // and 8×8 with the small layers' 32×32 tiles forced on and off (the default: on for GPUs).
    use SmallTiles::{Auto, Off, On};
    let configs = [
        (GemmTile::Outputs8x8, false, false, Auto, "Winograd where it applies"),
        (GemmTile::Outputs8x8, false, false, Auto, "8x8, no loop counters"),
        (GemmTile::Outputs8x8Pipelined, false, false, Auto, "8x8 pipelined, no loop counters"),
        (GemmTile::Outputs4x4, false, false, Auto, "4x4, no loop counters"),
        (GemmTile::Outputs8x8Prefetch, false, false, Auto, "8x8 prefetched"),
        (GemmTile::Outputs8x8Tile128, false, false, Auto, "8x8 in 128x128 tiles"),
        (GemmTile::Outputs8x8Tile64x128, false, false, Auto, "8x8 in 64x128 tiles"),
        (GemmTile::Outputs8x8, false, true, Auto, "8x8, im2col per value"),
        (GemmTile::Outputs8x8Pipelined, false, true, Auto, "8x8 pipelined, im2col per value"),
        (GemmTile::Outputs8x8, false, false, On, "8x8, 32x32 tiles when few"),
        (GemmTile::Outputs8x8, false, false, Off, "8x8, 64x64 tiles only"),
        (GemmTile::Outputs8x8, true, false, Auto, "8x8, loop counters"),
        (GemmTile::Outputs8x8Pipelined, true, false, Auto, "8x8 pipelined, loop counters"),
        (GemmTile::Outputs4x4, true, false, Auto, "4x4, loop counters"),
    ];
    for (i, (gemm_tile, loop_counters, im2col_per_value, small_tiles, label)) in
        configs.into_iter().enumerate()
    {
        // Each form alone: no other form compiled for the objectives' tuning.
        let options = GpuOptions {
            direct_convolutions: i > 0,
            loop_counters,
            gemm_tile,
            im2col_per_value,
            small_tiles,
            tune: Tune::Off,
            ..GpuOptions::default()
        };
        let gpu = Gpu::with_options(choice, &options)?;
        if i == 0 {
            println!("kernel clock: {:?} ({})", gpu.kernel_clock(), gpu.adapter().name);
            let c = gpu.ceilings(reps)?;
            println!(
                "ceilings: fma {:.1} GFLOP/s, GEMM inner step {:.1} GFLOP/s, copy {:.1} GB/s",
                c.fma_gflops, c.inner_gflops, c.copy_gbps
            );
        }
        let (mut seconds, mut flops) = (0.0, 0.0);
        for (c_in, c_out, down) in VGG16 {
            let side = size >> down;
            let f = 2.0 * (c_in * c_out * 9 * side * side) as f64;
            for backward in [false, true] {
                let s = gpu.conv3x3_seconds(c_in, c_out, (side, side), backward, reps)?;
                let dir = if backward { "bwd" } else { "fwd" };
                println!(
                    "{label:31} conv {c_in:>3}->{c_out:<3} {side:>4}x{side:<4} {dir}  {:9.3} ms  {:8.1} GFLOP/s",
                    s * 1e3,
                    f / s / 1e9
                );
                seconds += s;
                flops += f;
            }
        }
        println!("{label:31} total {:.3} ms, {:.1} GFLOP/s", seconds * 1e3, flops / seconds / 1e9);
    }
    Ok(())
}
