//! `impasto serve`: its arguments, and starting the web UI — finds (or downloads) the weights as a run
//! does, loads the network once, prints the URL, optionally opens the browser, and hands over to
//! `impasto_serve::serve` until Ctrl-C. Binds 127.0.0.1 unless `--host` says otherwise, with a warning
//! (and then the server requires the access token its URL carries, as it does with `--token`).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use impasto::{Arch, MAX_SIZE, Pooling, StyleConfig, Vgg};
use impasto_serve::{Limits, ServeConfig, Server};

use crate::args::{ModelArg, PreprocessArg};
use crate::progress::note;
use crate::settings::Env;
use crate::weights::{Got, Located, WeightsSearch};

const AFTER_HELP: &str = "\
Opens a page where you drop a content image and style images, set the size and weights, start
the run and watch it improve; the weights can be changed while it runs (it goes on from the current
image), and it can be paused, cancelled and downloaded at any moment.

The server listens on 127.0.0.1 only, and answers only requests addressed to this machine (no web
page can reach it through DNS rebinding) and changes nothing for a page of another site.
--host 0.0.0.0 (or another address) lets other machines in: the server then requires a random
access token, which the printed URL carries (opening it keeps the token in a cookie); --token
requires it on 127.0.0.1 too. Whoever has the URL can use this machine's CPU, and plain HTTP is
not encrypted: use it on networks you trust.

Examples:
  impasto serve --open
  impasto serve --port 9000 --max-size 768 --max-runs 2
  impasto serve --model vgg19 --weights vgg19-conv-imagenet.safetensors";

/// Arguments of `impasto serve`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct ServeArgs {
    /// Port to listen on (0 = any free port)
    #[arg(long, value_name = "N", default_value_t = 8787)]
    pub port: u16,

    /// Address to listen on; anything but a loopback address is reachable by others (a warning is
    /// printed, and the access token is required)
    #[arg(long, visible_alias = "bind", value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,

    /// Open the page in the default browser
    #[arg(long)]
    pub open: bool,

    /// Require a random access token (in the printed URL) also on 127.0.0.1; beyond loopback it is
    /// always required
    #[arg(long)]
    pub token: bool,

    /// Write each run's image into this folder (made if missing) as NAME-ID.png (the content's name, the job's id) when the run ends, and
    /// those of the runs under way when the server stops
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,

    /// Largest upload, all images of a run together, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "Limits")]
    pub max_upload_mb: u32,

    /// Largest image accepted, in megapixels (width × height)
    #[arg(long, value_name = "MP", default_value_t = 25.0, help_heading = "Limits")]
    pub max_pixels: f64,

    /// Largest output size (longest side) a page may ask for
    #[arg(long, value_name = "PX", default_value_t = 1024, help_heading = "Limits")]
    pub max_size: u32,

    /// Most iterations a page may ask for
    #[arg(long, value_name = "N", default_value_t = 2000, help_heading = "Limits")]
    pub max_iterations: usize,

    /// Runs optimised at the same time; the others wait in a queue
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64), help_heading = "Limits")]
    pub max_runs: u32,

    /// Runs that may wait in the queue
    #[arg(long, value_name = "N", default_value_t = 8, help_heading = "Limits")]
    pub max_queue: usize,

    /// Worker threads per run (0 = one per core)
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Limits")]
    pub threads: usize,

    /// Where each run's network and losses run: cpu (the default), auto (a hardware GPU if there is
    /// one, else the CPU), gpu or gpu:N (see `impasto devices`)
    #[arg(long, value_name = "auto|cpu|gpu|gpu:N", value_parser = crate::devices::parse_device, help_heading = "Limits")]
    pub device: Option<impasto::Device>,

    /// Network (VGG-19 is the one of Gatys et al.)
    #[arg(
        long,
        value_enum,
        value_name = "vgg16|vgg19",
        hide_possible_values = true,
        default_value = "vgg16",
        help_heading = "Model"
    )]
    pub model: ModelArg,

    /// Weights file (safetensors or PyTorch .pth), or `builtin`: the compact VGG-16 built into impasto [default: as
    /// for a run, see `impasto --help`]
    #[arg(long, value_name = "FILE", help_heading = "Model")]
    pub weights: Option<PathBuf>,

    /// Never download the weights; without any, serve the built-in compact VGG-16 (also
    /// IMPASTO_OFFLINE=1)
    #[arg(long, help_heading = "Model")]
    pub offline: bool,

    /// Input convention of the weights [default: what the weights file declares, else caffe]
    #[arg(long, value_enum, value_name = "caffe|torch", hide_possible_values = true, help_heading = "Model")]
    pub preprocess: Option<PreprocessArg>,
}

/// The server's limits from the flags.
pub fn limits(args: &ServeArgs) -> Result<Limits> {
    if !(args.max_pixels.is_finite() && args.max_pixels > 0.0 && args.max_pixels <= 1024.0) {
        bail!("invalid --max-pixels {}: give megapixels, more than 0 and at most 1024", args.max_pixels);
    }
    if !(16..=MAX_SIZE).contains(&args.max_size) {
        bail!("invalid --max-size {}: it must be between 16 and {MAX_SIZE} pixels", args.max_size);
    }
    if args.max_iterations == 0 {
        bail!("invalid --max-iterations 0: it must be at least 1");
    }
    // The run's own rule and message (`invalid threads: N (must be at most …)`), checked here and
    // not first by each job.
    StyleConfig { threads: args.threads, ..StyleConfig::default() }.validate(1)?;
    Ok(Limits {
        max_upload_bytes: (args.max_upload_mb as usize) << 20,
        max_pixels: (args.max_pixels * 1e6) as u64,
        max_size: args.max_size,
        max_iterations: args.max_iterations,
        max_runs: args.max_runs as usize,
        max_queue: args.max_queue,
        ..Limits::default()
    })
}

/// The warning printed when the server is reachable from other machines.
pub fn exposure_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "warning: listening on {addr}, not only on this machine: whoever has the URL below (its \
             token) can upload images and use this machine's CPU, over unencrypted HTTP"
        )
    })
}

/// Runs `impasto serve`.
pub fn run(args: ServeArgs, env: &Env) -> Result<()> {
    let limits = limits(&args)?;
    if let Some(dir) = &args.output {
        crate::batch::make_writable(dir)?;
    }
    let arch: Arch = args.model.into();
    let builtin = args.weights.as_deref() == Some(std::path::Path::new(crate::weights::BUILTIN));
    if builtin && arch != Arch::Vgg16 {
        bail!("--weights builtin is a VGG-16; it cannot serve --model {}", arch.name());
    }
    let search = WeightsSearch {
        explicit: if builtin { None } else { args.weights.clone() },
        builtin,
        env: env.weights.clone(),
        cache_dir: env.cache_dir.clone(),
        offline: if args.offline {
            Some("--offline")
        } else if env.offline {
            Some("IMPASTO_OFFLINE is set")
        } else {
            None
        },
        model_url: env.model_url.clone(),
    };
    let weights = match search.locate(arch)? {
        Located::File(p) => Some(p),
        Located::Builtin => None,
        Located::Missing(missing) => match missing.get(env.display(false, 0))? {
            Got::File(p) => Some(p),
            Got::Builtin(why) => {
                note(&format!(
                    "{why}: using {} (8-bit, layers up to {}; style layers {}); for the full model run \
                     `impasto models download vgg16` or pass --weights FILE",
                    impasto::EMBEDDED_LABEL,
                    impasto::COMPACT_LAST_LAYER,
                    impasto::default_style_layers(arch, impasto::COMPACT_LAST_LAYER)?.join(",")
                ));
                None
            }
        },
    };
    // The page uses the default layers: the network is cut after the deepest of them (the built-in
    // model has them down to relu4_2, and runs use the style layers it has).
    let net = match weights {
        Some(weights) => {
            let deepest = impasto::deepest_layer(&StyleConfig { model: arch, ..StyleConfig::default() })?;
            let preprocess = args.preprocess.map(Into::into);
            Vgg::load(&weights, arch, Pooling::Max, preprocess, &deepest)?
        }
        None => Vgg::embedded(Pooling::Max, impasto::COMPACT_LAST_LAYER)?,
    };
    let addr = SocketAddr::new(args.host, args.port);
    let device = crate::devices::settle(args.device.unwrap_or(impasto::Device::Cpu), args.device.is_some())?;
    let config = ServeConfig {
        addr,
        net: Arc::new(net),
        limits,
        threads: args.threads,
        require_token: args.token,
        device,
        output: args.output,
    };
    let open = args.open;
    let output = config.output.clone();
    impasto_serve::serve(config, |server| ready(server, open)).context("impasto serve")?;
    match output {
        Some(dir) => note(&format!("impasto serve: stopped (the runs' images are in {})", dir.display())),
        None => note("impasto serve: stopped"),
    }
    Ok(())
}

/// Prints the URL (and any warning), and opens the browser if asked.
fn ready(server: &Server, open: bool) {
    let (Ok(bound), Ok(url)) = (server.local_addr(), server.url()) else {
        return note("impasto serve: cannot read the address the server listens on");
    };
    if let Some(w) = exposure_warning(bound) {
        note(&w);
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "impasto serve: open {url} (Ctrl-C stops the server)");
    let _ = stdout.flush();
    if open && let Err(e) = open::that_detached(&url) {
        note(&format!("could not open a browser ({e}); open {url} yourself"));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn parse(argv: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["impasto", "serve"], argv].concat()).unwrap();
        match cli.command {
            Some(Command::Serve(args)) => args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn defaults_bind_loopback_with_the_library_limits() {
        let args = parse(&[]);
        assert_eq!(
            (args.host, args.port, args.open, args.token),
            (IpAddr::V4(Ipv4Addr::LOCALHOST), 8787, false, false)
        );
        assert_eq!(limits(&args).unwrap(), Limits::default());
        assert!(exposure_warning(SocketAddr::new(args.host, 0)).is_none());
        assert!(exposure_warning("[::1]:80".parse().unwrap()).is_none());
    }

    #[test]
    fn other_addresses_are_allowed_with_a_warning() {
        let args = parse(&["--bind", "0.0.0.0", "--port", "9000", "--open"]);
        let w = exposure_warning(SocketAddr::new(args.host, args.port)).unwrap();
        assert!(w.starts_with("warning: listening on 0.0.0.0:9000"), "{w}");
        assert!(args.open);
    }

    #[test]
    fn limit_flags_are_checked() {
        let l = limits(&parse(&["--max-upload-mb", "2", "--max-pixels", "0.5", "--max-runs", "3"])).unwrap();
        assert_eq!((l.max_upload_bytes, l.max_pixels, l.max_runs), (2 << 20, 500_000, 3));
        let e = limits(&parse(&["--max-pixels", "nan"])).unwrap_err().to_string();
        assert!(e.contains("--max-pixels"), "{e}");
        let e = limits(&parse(&["--max-size", "99999"])).unwrap_err().to_string();
        assert!(e.contains("--max-size"), "{e}");
        assert!(Cli::try_parse_from(["impasto", "serve", "--host", "nowhere"]).is_err());
        assert!(Cli::try_parse_from(["impasto", "serve", "--max-runs", "0"]).is_err());
    }
}
