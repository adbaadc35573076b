//! The measurement examples' command line: `[ADAPTER] [SIZE] [REPS]`, ADAPTER `gpu` (the first
//! hardware adapter) or `gpu:N` (any of `impasto devices`).

use impasto_gpu::Choice;

/// The adapter (as given, and as a [`Choice`]), the size and the repetitions, with the defaults
/// `gpu`, 512 and `reps`.
pub fn args(reps: usize) -> Result<(String, Choice, usize, usize), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(args.get(i).map(|a| a.parse()).transpose()?.unwrap_or(default))
    };
    let adapter = args.first().map_or("gpu", String::as_str).to_string();
    let choice = match adapter.strip_prefix("gpu:") {
        Some(n) => Choice::Index(n.parse()?),
        None if adapter == "gpu" => Choice::Auto,
        None => return Err(format!("adapter `{adapter}`: expected gpu or gpu:N").into()),
    };
    Ok((adapter, choice, arg(1, 512)?, arg(2, reps)?))
}
