//! Times one L-BFGS step (`impasto::bench::lbfgs_step_on`: active set, direction over a full
//! history, trial point; the objective replaced by a stored gradient) on a device, at each size:
//! the optimiser's own share of an iteration, its history on the host (`cpu`) or on a GPU.
//!
//! `cargo run --release -p impasto --example lbfgs_step -- DEVICE SIZE[,SIZE...] [HISTORY] [REPS]`
//! (DEVICE as `--device`: cpu, gpu, gpu:N; HISTORY 100, REPS 5 by default, after one warm-up step).

use impasto::Device;

#[allow(clippy::print_stdout)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [device, sizes, rest @ ..] = args.as_slice() else {
        return Err("usage: lbfgs_step DEVICE SIZE[,SIZE...] [HISTORY] [REPS]".into());
    };
    let device = Device::parse(device).ok_or_else(|| format!("unknown device {device}"))?;
    let history: usize = rest.first().map_or(Ok(100), |h| h.parse())?;
    let reps: usize = rest.get(1).map_or(Ok(5), |r| r.parse())?;
    for size in sizes.split(',') {
        let size: usize = size.parse()?;
        let s = impasto::bench::lbfgs_step_on(size, history, 1, reps, device)?;
        println!("{device} {size}x{size}, history {history}: {:.2} ms per step (median of {reps})", 1e3 * s);
    }
    Ok(())
}
