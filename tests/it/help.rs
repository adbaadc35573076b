//! Command-line parsing: `--help` (snapshotted; the README's flag table comes from it), `--version`, and
//! clap's own usage errors (exit status 2): bad values, unknown flags, conflicting flags.

use crate::common::Sandbox;

#[test]
fn help() {
    let out = Sandbox::new().run(&["--help"]);
    assert_eq!(out.code, Some(0));
    assert!(out.stderr.is_empty());
    insta::assert_snapshot!(out.stdout, @"
    Neural style transfer (Gatys et al.), CPU or GPU: repaints CONTENT in the style of the STYLE images

    Usage: impasto [OPTIONS] --output <OUT> <CONTENT> <STYLE>...
           impasto <COMMAND>

    Commands:
      bench    Measure the speed of one iteration on this machine (random weights, no files needed)
      models   List, download, locate or import the network weights (the user cache folder)
      serve    Start the web UI: run, watch and steer style transfers in the browser
      batch    Run many style transfers from a plan or a grid, split over the nodes of a cluster
      video    Stylise a video or a folder of frames, consistent from frame to frame
      devices  List the GPU adapters (for --device gpu:N): name, backend, type and memory limits
      tiles    Print sizes as tile jobs: plan the last scale's tiles, run them on several machines,
               stitch them

    Arguments:
      <CONTENT>   Image whose content (shapes, layout) is kept
      <STYLE>...  One or more images whose style is painted onto the content (mixed by --style-blend)

    Options:
      -h, --help     Print help
      -V, --version  Print version

    Output:
      -o, --output <OUT>    Output image: .png, .jpg, .jpeg, .webp, .tif, .tiff or .bmp
      -s, --size <PX>       Longest side of the output in pixels [default: 512]
          --save-every <N>  Also write the image every N iterations: out.png → out_0100.png (0 = never)
                            [default: 0]
          --quality <N>     JPEG quality, 1..=100 (JPEG output only) [default: 95]
          --depth <8|16>    Bits per channel: 8, or 16 (.png and .tif only) [default: 8]

    Loss:
          --content-weight <W>           Weight of the content loss [default: 5]
          --style-weight <W>             Weight of the style loss [default: 100]
          --tv-weight <W>                Weight of the total-variation loss (smoothness) [default:
                                         1000000]
          --content-layers <LAYERS>      Layers that measure content, comma separated [default: relu4_2]
          --style-layers <LAYERS>        Layers that measure style, comma separated [default:
                                         relu1_1,relu2_1,relu3_1,relu4_1,relu5_1;
                                         relu1_1,relu2_1,relu3_1,relu4_1 with the built-in model]
          --style-loss <gram|w2>         How a style layer is compared with the style's: gram (Gram
                                         matrices, as neural-style) or w2 (the Wasserstein-2 distance
                                         between the features' Gaussians, as crowsonkb's) [default:
                                         gram]
          --style-layer-weights <W,...>  One weight per style layer, comma separated [default: all 1]
          --style-blend <W,...>          One weight per style image, comma separated, normalised
                                         [default: equal]
          --style-scale <X>              Style image size relative to the output size [default: 1]
          --style-size <PX>              The style images' longest side at every scale, in pixels, in
                                         place of --style-scale (the strokes keep their size in pixels
                                         as the output grows)

    Optimisation:
      -n, --iterations <N>          Optimiser iterations [default: 500]
          --optimizer <lbfgs|adam>  L-BFGS (best per iteration) or Adam (cheaper iterations, needs more)
                                    [default: lbfgs]
          --learning-rate <LR>      Adam step size on the 0..1 pixel scale (Adam only) [default: 0.02]
          --lbfgs-history <N>       L-BFGS history length (L-BFGS only; capped so the pairs fit in 768
                                    MiB: 32 at 1024 px) [default: 100]
          --init <START>            Where to start: content, noise, gray (mid-grey), style-stats (noise
                                    with the style images' colour statistics), style (the first style
                                    image) or an image file (neural-style's `image` and `random` are
                                    taken as content and noise) [default: content]
          --seed <N>                Seed for the random starts (--init noise, gray and style-stats)
                                    [default: 0]
          --ema-decay <X>           Return a moving average of the Adam iterates with this decay (Adam
                                    only; 0 = off) [default: 0.99]

    Multi-scale:
          --min-size <PX>         Optimise coarse-to-fine from this longest side up (when --size is at
                                  least --scale-ratio times larger) [default: 512]
          --scale-ratio <X>       Size ratio between successive scales [default: 2]
          --scale-iterations <N>  Iterations at each scale after the first [default: half the previous
                                  scale's, at least 50]
          --no-multiscale         Optimise at the output size only

    Colour:
          --preserve-colors                Keep the content's colours: the result's luminance with the
                                           content's chroma
          --luminance-only                 Transfer luminance only (grey content and style), then put
                                           the content's chroma back
          --color-transfer <cholesky|pca>  Recolour the style images to the content's colour statistics
                                           first

    Masks:
          --mask <FILE>        Where to stylise: a greyscale image, white = stylised, black = kept as
                               the content
          --style-mask <FILE>  Where each style applies (white = there); give one per style image, in
                               order

    Model:
          --model <vgg16|vgg19>       Network (VGG-19 is the one of Gatys et al.) [default: vgg16]
          --weights <FILE>            Weights file (safetensors or PyTorch .pth), or `builtin`: the
                                      compact VGG-16 built into impasto [default: see below]
          --offline                   Never download the weights; without any, use the built-in compact
                                      VGG-16 (also IMPASTO_OFFLINE=1)
          --preprocess <caffe|torch>  Input convention of the weights: caffe (BGR 0..255 minus the mean)
                                      or torch (RGB 0..1, mean/std) [default: what the weights file
                                      declares, else caffe]
          --pooling <max|avg|l2>      Pooling: max (as trained), avg (smoother) or l2 (the root mean
                                      square, between the two) [default: max]

    Print sizes (tiling):
          --max-memory <SIZE>      Memory the run may take: 3G, 1.5GiB, 800M or bytes; a scale that
                                   would need more is optimised in overlapping tiles that fit [default:
                                   3/4 of this machine's memory]
          --max-gpu-memory <SIZE>  GPU memory the run may take on a GPU (--device): a scale that would
                                   hold more there is optimised in overlapping tiles that fit [default:
                                   80 % of a discrete card's memory, or of what its driver leaves the
                                   run where less (see `impasto devices`), else none; tiles always keep
                                   within the adapter's buffer limits]
          --tile <PX>              Optimise every scale larger than PX in overlapping tiles of PX, one
                                   after the other
          --tile-overlap <PX>      Least overlap between neighbouring tiles (tiles must be at least
                                   2×PX+64) [default: 80]
          --tile-rounds <N>        Rounds over the tiles, coupled through the whole image's style (each
                                   tile's iterations are spread over them); 0: each tile matches the
                                   style on its own [default: 2]

    Time and checkpoints:
          --time-limit <DURATION>  Stop after this much optimisation time and write the image: 90s, 5m,
                                   1h30m or seconds
          --checkpoint <FILE>      Save the optimisation state to FILE (every --checkpoint-every
                                   iterations, when the run ends, and when it stops early or is
                                   interrupted)
          --checkpoint-every <N>   Iterations between checkpoints (0 = only at the end or when the run
                                   stops early) [default: 0]
          --resume <FILE>          Continue from a checkpoint: the same images and settings as the run
                                   that wrote it, except --iterations (a larger -n continues it for
                                   longer), --time-limit and the output, logging and checkpoint flags

    Run:
          --threads <N>                  Worker threads (0 = one per core; at most 1024, and more than
                                         the cores only slow a run down) [default: 0]
          --device <auto|cpu|gpu|gpu:N>  Where the network and losses run: cpu (the default), auto (a
                                         hardware GPU if there is one, else the CPU), gpu (the first
                                         hardware GPU; both take NVIDIA's in CUDA_VISIBLE_DEVICES's
                                         order where it is set) or gpu:N (any adapter of `impasto
                                         devices`, software ones too)
          --print-every <N>              Without a terminal, log a line every N iterations (0 = never)
                                         [default: 50]
      -q, --quiet                        Print nothing but errors

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
    current image and the --checkpoint are written; press Ctrl-C twice to quit at once).
    ");
}

#[test]
fn short_help_is_the_same() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["-h"]).stdout, sb.run(&["--help"]).stdout);
}

/// The notes under each command's options are wrapped by hand within clap's 100 columns: a line
/// clap had to wrap again leaves a word or two on a line of its own after a full one.
#[test]
fn no_help_text_is_wrapped_twice() {
    let commands: [&[&str]; 16] = [
        &[],
        &["video"],
        &["batch"],
        &["serve"],
        &["devices"],
        &["bench"],
        &["models"],
        &["models", "list"],
        &["models", "download"],
        &["models", "path"],
        &["models", "import"],
        &["tiles"],
        &["tiles", "plan"],
        &["tiles", "run"],
        &["tiles", "stitch"],
        &["tiles", "seams"],
    ];
    for command in commands {
        let out = Sandbox::new().run(&[command, &["--help"]].concat());
        assert_eq!(out.code, Some(0), "{command:?}: {}", out.stderr);
        let lines: Vec<&str> = out.stdout.lines().collect();
        for pair in lines.windows(2) {
            let (full, next) = (pair[0], pair[1]);
            let prose = !next.is_empty() && !next.starts_with(' ') && !full.starts_with(' ');
            assert!(
                !(prose && full.chars().count() >= 90 && next.split_whitespace().count() <= 2),
                "{command:?} --help, wrapped twice:\n{full}\n{next}"
            );
        }
    }
}

#[test]
fn version() {
    let out = Sandbox::new().run(&["--version"]);
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout, format!("impasto {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn no_arguments() {
    let out = Sandbox::new().run(&[]);
    assert_eq!(out.code, Some(2));
    assert!(out.stdout.is_empty());
    insta::assert_snapshot!(out.stderr, @"impasto: error: the following required arguments were not provided: --output <OUT> <CONTENT> <STYLE>... (try --help)");
}

#[test]
fn missing_output() {
    let out = Sandbox::new().run(&["c.png", "s.png"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: the following required arguments were not provided: --output <OUT> (try --help)");
}

#[test]
fn bad_enum_value() {
    let out = Sandbox::new().run(&["c.png", "s.png", "-o", "o.png", "--optimizer", "sgd"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: invalid value 'sgd' for '--optimizer <lbfgs|adam>' [possible values: lbfgs, adam] (try --help)");
}

#[test]
fn not_a_number() {
    let out = Sandbox::new().run(&["c.png", "s.png", "-o", "o.png", "--size", "big"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: invalid value 'big' for '--size <PX>': invalid digit found in string (try --help)");
    // A negative number is a bad value, not an unknown flag, in the run and in every subcommand.
    let out = Sandbox::new().run(&["c.png", "s.png", "-o", "o.png", "-n", "-1"]);
    insta::assert_snapshot!(out.stderr, @"impasto: error: invalid value '-1' for '--iterations <N>': invalid digit found in string (try --help)");
    let out = Sandbox::new().run(&["serve", "--port", "-1"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: invalid value '-1' for '--port <N>': -1 is not in 0..=65535 (try --help)");
}

#[test]
fn unknown_flag() {
    let out = Sandbox::new().run(&["c.png", "s.png", "-o", "o.png", "--colour"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: unexpected argument '--colour' found; tip: a similar argument exists: '--color-transfer' (try --help)");
}

#[test]
fn conflicting_flags() {
    let sb = Sandbox::new();
    let out = sb.run(&["c.png", "s.png", "-o", "o.png", "--luminance-only", "--preserve-colors"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: the argument '--luminance-only' cannot be used with '--preserve-colors' (try --help)");
    let out = sb.run(&["c.png", "s.png", "-o", "o.png", "--color-transfer", "pca", "--luminance-only"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: the argument '--color-transfer <cholesky|pca>' cannot be used with '--luminance-only' (try --help)");
    let out = sb.run(&["c.png", "s.png", "-o", "o.png", "--no-multiscale", "--min-size", "256"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: the argument '--no-multiscale' cannot be used with '--min-size <PX>' (try --help)");
    let out = sb.run(&["c.png", "s.png", "-o", "o.png", "--checkpoint-every", "10"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: the following required arguments were not provided: --checkpoint <FILE> (try --help)");
}

#[test]
fn quality_and_depth_values() {
    let sb = Sandbox::new();
    let out = sb.run(&["c.png", "s.png", "-o", "o.jpg", "--quality", "101"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: invalid value '101' for '--quality <N>': 101 is not in 1..=100 (try --help)");
    let out = sb.run(&["c.png", "s.png", "-o", "o.png", "--depth", "12"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"impasto: error: invalid value '12' for '--depth <8|16>': must be 8 or 16 (try --help)");
}
