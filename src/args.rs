//! The raw command line: clap derive structs only. Values are parsed but not resolved or
//! cross-checked here; `settings.rs` turns them into an `impasto::StyleConfig`.
//!
//! Defaults come from `impasto::StyleConfig::default()` where it has the value; the few that clap can
//! only take as literal text (lists, enums) are checked against it by a unit test in `settings.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use impasto::StyleConfig;

use crate::batch::BatchArgs;
use crate::bench::BenchArgs;
use crate::models::ModelsArgs;
use crate::serve::ServeArgs;
use crate::video::VideoArgs;

/// The Adam step size used when `--learning-rate` is not given (the library's `Optimizer::Adam` has no
/// default of its own because L-BFGS is the default optimiser).
pub const DEFAULT_LEARNING_RATE: f32 = 0.02;

/// Every plain log line is printed at this iteration interval unless `--print-every` says otherwise.
pub const DEFAULT_PRINT_EVERY: usize = 50;

fn defaults() -> StyleConfig {
    StyleConfig::default()
}

pub(crate) fn default_lbfgs_history() -> usize {
    match defaults().optimizer {
        impasto::Optimizer::Lbfgs { history } => history,
        impasto::Optimizer::Adam { .. } => 100,
    }
}

const AFTER_HELP: &str = "\
Examples:
  impasto photo.jpg starry_night.jpg -o out.png
  impasto photo.jpg a.jpg b.jpg --style-blend 0.7,0.3 --size 768 -o out.jpg
  impasto photo.jpg style.jpg --optimizer adam --iterations 1000 --save-every 100 -o out.png
  impasto photo.jpg style.jpg --size 2048 --time-limit 1h --checkpoint run.ckpt -o big.png
  impasto photo.jpg style.jpg --size 2048 --checkpoint run.ckpt --resume run.ckpt -o big.png
  impasto photo.jpg style.jpg --size 8192 --max-memory 3G -o poster.png   # in tiles
  impasto bench --sizes 256,512
  impasto models download vgg19
  impasto serve --open

Weights are looked for in --weights FILE, else $IMPASTO_WEIGHTS, else the user cache folder
(~/.cache/impasto/vgg16-conv-imagenet.safetensors on Linux; vgg19-... for --model vgg19;
$IMPASTO_CACHE_DIR replaces the folder): a safetensors file with torchvision key names
(features.N.weight|bias). When there is none, the first run downloads the model (over 500 MB,
once; $IMPASTO_MODEL_URL sets another source) and caches its convolutions. Offline (--offline,
IMPASTO_OFFLINE=1, or no network), a VGG-16 run uses the compact VGG-16 built into impasto
instead (8-bit, layers up to relu4_2; style layers relu1_1..relu4_1), as does --weights builtin.
See `impasto models --help` to download or import weights beforehand.

Exit status: 0 done, 1 error, 2 bad command line, 130 interrupted by Ctrl-C, SIGTERM or SIGHUP (the
current image and the --checkpoint are written; press Ctrl-C twice to quit at once).";

/// The whole command line: a subcommand, or else the arguments of a style-transfer run (which conflict
/// with, and stop being required by, a subcommand).
#[derive(Debug, Parser)]
#[command(
    name = "impasto",
    version,
    about = "Neural style transfer (Gatys et al.), CPU or GPU: repaints CONTENT in the style of the STYLE images",
    long_about = None,
    after_help = AFTER_HELP,
    max_term_width = 100,
    args_override_self = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// A subcommand instead of a run.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The style-transfer run (the default command).
    #[command(flatten)]
    pub run: RunArgs,
}

impl Cli {
    /// Parses the process's command line. A negative number is a value anywhere (`-n -1` is a bad
    /// value for -n, not an unknown flag `-1`), in every subcommand too.
    pub fn parse_args() -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        fn negative_numbers(cmd: clap::Command) -> clap::Command {
            cmd.allow_negative_numbers(true).mut_subcommands(negative_numbers)
        }
        let mut cmd = negative_numbers(Cli::command());
        let mut matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
        Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd))
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure the speed of one iteration on this machine (random weights, no files needed)
    Bench(BenchArgs),
    /// List, download, locate or import the network weights (the user cache folder)
    Models(ModelsArgs),
    /// Start the web UI: run, watch and steer style transfers in the browser
    Serve(ServeArgs),
    /// Run many style transfers from a plan or a grid, split over the nodes of a cluster
    Batch(BatchArgs),
    /// Stylise a video or a folder of frames, consistent from frame to frame
    #[command(
        override_usage = "impasto video [OPTIONS] --output <OUT> <IN> <STYLE>...",
        mut_arg("content", |a| a.index(1).value_name("IN").help("Video file (anything ffmpeg reads) or folder of frames")),
        mut_arg("styles", |a| a.index(2)),
        mut_arg("output", |a| a.value_name("OUT").help("Output: .mp4 (H.264, the input's frame rate and audio) or a folder of numbered PNG frames")),
        mut_arg("resume", |a| a.num_args(0).default_missing_value("-").help("Continue a stopped clip: keep its finished frames, go on with the frame in progress from its checkpoint, and stylise the rest")),
        mut_arg("checkpoint", |a| a.hide(true)),
        // The frame's own checkpoint: no --checkpoint FILE (a new arg of the same id, without its
        // `requires`).
        mut_arg("checkpoint_every", |a| clap::Arg::new(a.get_id().clone())
            .long("checkpoint-every")
            .value_name("N")
            .value_parser(clap::value_parser!(usize))
            .default_value("0")
            .help_heading("Time and checkpoints")
            .help("Also write the checkpoint of the frame in progress every N iterations, for a clip killed outright (0 = only when it is stopped)")),
        mut_arg("save_every", |a| a.hide(true)),
        mut_arg("time_limit", |a| a.hide(true)),
        mut_arg("init", |a| a.hide(true)),
        mut_arg("seed", |a| a.hide(true)),
        mut_arg("quality", |a| a.hide(true)),
        mut_arg("depth", |a| a.help("Bits per channel of the frames: 8, or 16 (a folder of frames only; an .mp4 is 8-bit)")),
    )]
    Video(Box<VideoArgs>),
    /// List the GPU adapters (for --device gpu:N): name, backend, type and memory limits
    Devices(crate::devices::DevicesArgs),
    /// Print sizes as tile jobs: plan the last scale's tiles, run them on several machines, stitch them
    Tiles(Box<crate::tiles::TilesArgs>),
}

/// Arguments of a style-transfer run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Image whose content (shapes, layout) is kept
    #[arg(value_name = "CONTENT", required = true)]
    pub content: Option<PathBuf>,

    /// One or more images whose style is painted onto the content (mixed by --style-blend)
    #[arg(value_name = "STYLE", required = true, num_args = 1..)]
    pub styles: Vec<PathBuf>,

    /// Output image: .png, .jpg, .jpeg, .webp, .tif, .tiff or .bmp
    #[arg(short, long, value_name = "OUT", required = true, help_heading = "Output")]
    pub output: Option<PathBuf>,

    /// Longest side of the output in pixels
    #[arg(short, long, value_name = "PX", default_value_t = defaults().size.into(), allow_negative_numbers = true, help_heading = "Output")]
    pub size: i64,

    /// Also write the image every N iterations: out.png → out_0100.png (0 = never)
    #[arg(long, value_name = "N", default_value_t = 0, help_heading = "Output")]
    pub save_every: usize,

    /// JPEG quality, 1..=100 (JPEG output only)
    #[arg(long, value_name = "N", default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100), help_heading = "Output")]
    pub quality: u8,

    /// Bits per channel: 8, or 16 (.png and .tif only)
    #[arg(
        long,
        value_name = "8|16",
        default_value = "8",
        value_parser = parse_depth,
        help_heading = "Output"
    )]
    pub depth: u8,

    /// Weight of the content loss
    #[arg(long, value_name = "W", default_value_t = defaults().content_weight, allow_negative_numbers = true, help_heading = "Loss")]
    pub content_weight: f32,

    /// Weight of the style loss
    #[arg(long, value_name = "W", default_value_t = defaults().style_weight, allow_negative_numbers = true, help_heading = "Loss")]
    pub style_weight: f32,

    /// Weight of the total-variation loss (smoothness)
    #[arg(long, value_name = "W", default_value_t = defaults().tv_weight, allow_negative_numbers = true, help_heading = "Loss")]
    pub tv_weight: f32,

    /// Layers that measure content, comma separated
    #[arg(
        long,
        value_name = "LAYERS",
        value_delimiter = ',',
        default_value = "relu4_2",
        help_heading = "Loss"
    )]
    pub content_layers: Vec<String>,

    /// Layers that measure style, comma separated [default: relu1_1,relu2_1,relu3_1,relu4_1,relu5_1;
    /// relu1_1,relu2_1,relu3_1,relu4_1 with the built-in model]
    #[arg(long, value_name = "LAYERS", value_delimiter = ',', help_heading = "Loss")]
    pub style_layers: Option<Vec<String>>,

    /// How a style layer is compared with the style's: gram (Gram matrices, as neural-style) or w2
    /// (the Wasserstein-2 distance between the features' Gaussians, as crowsonkb's)
    #[arg(
        long,
        value_enum,
        value_name = "gram|w2",
        hide_possible_values = true,
        default_value = "gram",
        help_heading = "Loss"
    )]
    pub style_loss: StyleLossArg,

    /// One weight per style layer, comma separated [default: all 1]
    #[arg(
        long,
        value_name = "W,...",
        value_delimiter = ',',
        allow_negative_numbers = true,
        help_heading = "Loss"
    )]
    pub style_layer_weights: Option<Vec<f32>>,

    /// One weight per style image, comma separated, normalised [default: equal]
    #[arg(
        long,
        value_name = "W,...",
        value_delimiter = ',',
        allow_negative_numbers = true,
        help_heading = "Loss"
    )]
    pub style_blend: Option<Vec<f32>>,

    /// Style image size relative to the output size
    #[arg(long, value_name = "X", default_value_t = defaults().style_scale, allow_negative_numbers = true, help_heading = "Loss")]
    pub style_scale: f32,

    /// The style images' longest side at every scale, in pixels, in place of --style-scale (the
    /// strokes keep their size in pixels as the output grows)
    #[arg(long, value_name = "PX", conflicts_with = "style_scale", help_heading = "Loss")]
    pub style_size: Option<u32>,

    /// Optimiser iterations
    #[arg(short = 'n', long, value_name = "N", default_value_t = defaults().iterations, help_heading = "Optimisation")]
    pub iterations: usize,

    /// L-BFGS (best per iteration) or Adam (cheaper iterations, needs more)
    #[arg(
        long,
        value_enum,
        value_name = "lbfgs|adam",
        hide_possible_values = true,
        default_value = "lbfgs",
        help_heading = "Optimisation"
    )]
    pub optimizer: OptimizerArg,

    /// Adam step size on the 0..1 pixel scale (Adam only)
    #[arg(long, value_name = "LR", default_value_t = DEFAULT_LEARNING_RATE, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub learning_rate: f32,

    /// L-BFGS history length (L-BFGS only; capped so the pairs fit in 768 MiB: 32 at 1024 px)
    #[arg(long, value_name = "N", default_value_t = default_lbfgs_history(), help_heading = "Optimisation")]
    pub lbfgs_history: usize,

    /// Where to start: content, noise, gray (mid-grey), style-stats (noise with the style images'
    /// colour statistics), style (the first style image) or an image file (neural-style's `image` and
    /// `random` are taken as content and noise)
    #[arg(long, value_name = "START", default_value = "content", help_heading = "Optimisation")]
    pub init: String,

    /// Seed for the random starts (--init noise, gray and style-stats)
    #[arg(long, value_name = "N", default_value_t = defaults().seed, help_heading = "Optimisation")]
    pub seed: u64,

    /// Return a moving average of the Adam iterates with this decay (Adam only; 0 = off)
    #[arg(long, value_name = "X", default_value_t = defaults().ema_decay, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub ema_decay: f32,

    /// Optimise coarse-to-fine from this longest side up (when --size is at least
    /// --scale-ratio times larger)
    #[arg(long, value_name = "PX", default_value_t = defaults().min_size, help_heading = "Multi-scale")]
    pub min_size: u32,

    /// Size ratio between successive scales
    #[arg(long, value_name = "X", default_value_t = defaults().scale_ratio, allow_negative_numbers = true, help_heading = "Multi-scale")]
    pub scale_ratio: f32,

    /// Iterations at each scale after the first [default: half the previous scale's, at least 50]
    #[arg(long, value_name = "N", help_heading = "Multi-scale")]
    pub scale_iterations: Option<usize>,

    /// Optimise at the output size only
    #[arg(long, conflicts_with = "min_size", help_heading = "Multi-scale")]
    pub no_multiscale: bool,

    /// Keep the content's colours: the result's luminance with the content's chroma
    #[arg(long, help_heading = "Colour")]
    pub preserve_colors: bool,

    /// Transfer luminance only (grey content and style), then put the content's chroma back
    #[arg(long, conflicts_with = "preserve_colors", help_heading = "Colour")]
    pub luminance_only: bool,

    /// Recolour the style images to the content's colour statistics first
    #[arg(
        long,
        value_enum,
        value_name = "cholesky|pca",
        hide_possible_values = true,
        conflicts_with = "luminance_only",
        help_heading = "Colour"
    )]
    pub color_transfer: Option<ColorTransferArg>,

    /// Where to stylise: a greyscale image, white = stylised, black = kept as the content
    #[arg(long, value_name = "FILE", help_heading = "Masks")]
    pub mask: Option<PathBuf>,

    /// Where each style applies (white = there); give one per style image, in order
    #[arg(long, value_name = "FILE", help_heading = "Masks")]
    pub style_mask: Vec<PathBuf>,

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

    /// Weights file (safetensors or PyTorch .pth), or `builtin`: the compact VGG-16 built into impasto [default: see
    /// below]
    #[arg(long, value_name = "FILE", help_heading = "Model")]
    pub weights: Option<PathBuf>,

    /// Never download the weights; without any, use the built-in compact VGG-16 (also
    /// IMPASTO_OFFLINE=1)
    #[arg(long, help_heading = "Model")]
    pub offline: bool,

    /// Input convention of the weights: caffe (BGR 0..255 minus the mean) or torch (RGB 0..1,
    /// mean/std) [default: what the weights file declares, else caffe]
    #[arg(long, value_enum, value_name = "caffe|torch", hide_possible_values = true, help_heading = "Model")]
    pub preprocess: Option<PreprocessArg>,

    /// Pooling: max (as trained), avg (smoother) or l2 (the root mean square, between the two)
    #[arg(
        long,
        value_enum,
        value_name = "max|avg|l2",
        hide_possible_values = true,
        default_value = "max",
        help_heading = "Model"
    )]
    pub pooling: PoolingArg,

    /// Memory the run may take: 3G, 1.5GiB, 800M or bytes; a scale that would need more is optimised
    /// in overlapping tiles that fit [default: 3/4 of this machine's memory]
    #[arg(long, value_name = "SIZE", help_heading = "Print sizes (tiling)")]
    pub max_memory: Option<String>,

    /// GPU memory the run may take on a GPU (--device): a scale that would hold more there is
    /// optimised in overlapping tiles that fit [default: 80 % of a discrete card's memory, or of
    /// what its driver leaves the run where less (see `impasto devices`), else none; tiles always
    /// keep within the adapter's buffer limits]
    #[arg(long, value_name = "SIZE", help_heading = "Print sizes (tiling)")]
    pub max_gpu_memory: Option<String>,

    /// Optimise every scale larger than PX in overlapping tiles of PX, one after the other
    #[arg(long, value_name = "PX", help_heading = "Print sizes (tiling)")]
    pub tile: Option<u32>,

    /// Least overlap between neighbouring tiles (tiles must be at least 2×PX+64)
    #[arg(long, value_name = "PX", default_value_t = defaults().tile_overlap, help_heading = "Print sizes (tiling)")]
    pub tile_overlap: u32,

    /// Rounds over the tiles, coupled through the whole image's style (each tile's iterations are
    /// spread over them); 0: each tile matches the style on its own
    #[arg(long, value_name = "N", default_value_t = defaults().tile_rounds, help_heading = "Print sizes (tiling)")]
    pub tile_rounds: usize,

    /// Stop after this much optimisation time and write the image: 90s, 5m, 1h30m or seconds
    #[arg(long, value_name = "DURATION", help_heading = "Time and checkpoints")]
    pub time_limit: Option<String>,

    /// Save the optimisation state to FILE (every --checkpoint-every iterations, when the run ends,
    /// and when it stops early or is interrupted)
    #[arg(long, value_name = "FILE", help_heading = "Time and checkpoints")]
    pub checkpoint: Option<PathBuf>,

    /// Iterations between checkpoints (0 = only at the end or when the run stops early)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "checkpoint",
        help_heading = "Time and checkpoints"
    )]
    pub checkpoint_every: usize,

    /// Continue from a checkpoint: the same images and settings as the run that wrote it, except
    /// --iterations (a larger -n continues it for longer), --time-limit and the output, logging and
    /// checkpoint flags
    #[arg(long, value_name = "FILE", help_heading = "Time and checkpoints")]
    pub resume: Option<PathBuf>,

    /// Worker threads (0 = one per core; at most 1024, and more than the cores only slow a run down)
    #[arg(long, value_name = "N", default_value_t = defaults().threads, help_heading = "Run")]
    pub threads: usize,

    /// Where the network and losses run: cpu (the default), auto (a hardware GPU if there is one,
    /// else the CPU), gpu (the first hardware GPU; both take NVIDIA's in CUDA_VISIBLE_DEVICES's
    /// order where it is set) or gpu:N (any adapter of `impasto devices`, software ones too)
    #[arg(
        long,
        value_name = "auto|cpu|gpu|gpu:N",
        value_parser = crate::devices::parse_device,
        help_heading = "Run"
    )]
    pub device: Option<impasto::Device>,

    /// Test hook: inject a GPU failure (lost@N: the Nth submission finds the device lost; oom@N: the
    /// Nth allocation fails; kernel=NAME: that kernel does not compile; binding=BYTES: open the
    /// device with at most this storage binding size; memory=BYTES[/BUDGET]: take the adapter for a
    /// discrete card with this much memory, of which its driver leaves the run BUDGET;
    /// capacity=BYTES: allocations fail beyond this many bytes alive on the device)
    #[arg(
        long,
        value_name = "lost@N|oom@N|kernel=NAME|binding=BYTES|memory=BYTES[/BUDGET]|capacity=BYTES",
        value_parser = parse_gpu_fault,
        hide = true
    )]
    pub gpu_fault: Option<impasto::GpuFaults>,

    /// Without a terminal, log a line every N iterations (0 = never)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PRINT_EVERY, help_heading = "Run")]
    pub print_every: usize,

    /// Print nothing but errors
    #[arg(short, long, help_heading = "Run")]
    pub quiet: bool,
}

/// `--depth`: 8 or 16.
fn parse_depth(v: &str) -> Result<u8, String> {
    match v {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err("must be 8 or 16".into()),
    }
}

/// `--optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    Lbfgs,
    Adam,
}

/// `--model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    Vgg16,
    Vgg19,
}

/// `--preprocess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PreprocessArg {
    Caffe,
    Torch,
}

/// `--color-transfer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorTransferArg {
    Cholesky,
    Pca,
}

/// `--style-loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StyleLossArg {
    Gram,
    W2,
}

/// `--pooling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    Max,
    /// Also `average` (crowsonkb/style-transfer-pytorch's word).
    #[value(alias = "average")]
    Avg,
    L2,
}

fn parse_gpu_fault(s: &str) -> Result<impasto::GpuFaults, String> {
    impasto::GpuFaults::parse(s).ok_or_else(|| {
        format!("`{s}` is not lost@N, oom@N, kernel=NAME, binding=BYTES or memory=BYTES[/BUDGET]")
    })
}
