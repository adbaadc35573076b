//! Command-line parsing: `--help` (snapshotted; the README's flag table comes from it), `--version`, and
//! clap's own usage errors (exit status 2).

use crate::common::Sandbox;

#[test]
fn help() {
    let out = Sandbox::new().run(&["--help"]);
    assert_eq!(out.code, Some(0));
    assert!(out.stderr.is_empty());
    insta::assert_snapshot!(out.stdout, @"
    Neural style transfer (Gatys et al.) on the CPU: repaints CONTENT in the style of the STYLE images.

    Usage: impasto [OPTIONS] --output <OUT> <CONTENT> <STYLE>...

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

    Loss:
          --content-weight <W>           Weight of the content loss [default: 5]
          --style-weight <W>             Weight of the style loss [default: 100]
          --tv-weight <W>                Weight of the total-variation loss (smoothness) [default:
                                         1000000]
          --content-layers <LAYERS>      Layers that measure content, comma separated [default: relu4_2]
          --style-layers <LAYERS>        Layers that measure style, comma separated [default:
                                         relu1_1,relu2_1,relu3_1,relu4_1,relu5_1]
          --style-layer-weights <W,...>  One weight per style layer, comma separated [default: all 1]
          --style-blend <W,...>          One weight per style image, comma separated, normalised
                                         [default: equal]
          --style-scale <X>              Style image size relative to the output size [default: 1]

    Optimisation:
      -n, --iterations <N>             Optimiser iterations [default: 500]
          --optimizer <lbfgs|adam>     L-BFGS (best per iteration) or Adam (cheaper iterations, needs
                                       more) [default: lbfgs]
          --learning-rate <LR>         Adam step size on the 0..1 pixel scale (Adam only) [default:
                                       0.02]
          --lbfgs-history <N>          L-BFGS history length (L-BFGS only) [default: 100]
          --init <content|noise|FILE>  Start from the content image, seeded noise, or an image file
                                       [default: content]
          --seed <N>                   Seed for --init noise [default: 0]

    Model:
          --model <vgg16|vgg19>       Network (VGG-19 is the one of Gatys et al.) [default: vgg16]
          --weights <FILE>            Weights file (safetensors) [default: see below]
          --preprocess <caffe|torch>  Input convention of the weights: caffe (BGR 0..255 minus the mean)
                                      or torch (RGB 0..1, mean/std) [default: what the weights file
                                      declares, else caffe]
          --pooling <max|avg>         Pooling: max (as trained) or avg (smoother) [default: max]

    Run:
          --threads <N>      Worker threads (0 = one per core) [default: 0]
          --print-every <N>  Without a terminal, log a line every N iterations (0 = never) [default: 50]
      -q, --quiet            Print nothing but errors

    Examples:
      impasto photo.jpg starry_night.jpg -o out.png
      impasto photo.jpg a.jpg b.jpg --style-blend 0.7,0.3 --size 768 -o out.jpg
      impasto photo.jpg style.jpg --optimizer adam --iterations 1000 --save-every 100 -o out.png

    Weights are looked for in --weights FILE, else $IMPASTO_WEIGHTS, else the user cache folder
    (~/.cache/impasto/vgg16-conv-imagenet.safetensors on Linux; vgg19-... for --model vgg19):
    a safetensors file with torchvision key names (features.N.weight|bias).

    Exit status: 0 done, 1 error, 2 bad command line, 130 interrupted by Ctrl-C (the current image
    is written; press Ctrl-C twice to quit at once).
    ");
}

#[test]
fn short_help_is_the_same() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["-h"]).stdout, sb.run(&["--help"]).stdout);
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
    insta::assert_snapshot!(out.stderr, @"
    error: the following required arguments were not provided:
      --output <OUT>
      <CONTENT>
      <STYLE>...

    Usage: impasto --output <OUT> <CONTENT> <STYLE>...

    For more information, try '--help'.
    ");
}

#[test]
fn missing_output() {
    let out = Sandbox::new().run(&["c.png", "s.png"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"
    error: the following required arguments were not provided:
      --output <OUT>

    Usage: impasto --output <OUT> <CONTENT> <STYLE>...

    For more information, try '--help'.
    ");
}

#[test]
fn bad_enum_value() {
    let out = Sandbox::new().run(&["c.png", "s.png", "-o", "o.png", "--optimizer", "sgd"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"
    error: invalid value 'sgd' for '--optimizer <lbfgs|adam>'
      [possible values: lbfgs, adam]

    For more information, try '--help'.
    ");
}

#[test]
fn not_a_number() {
    let out = Sandbox::new().run(&["c.png", "s.png", "-o", "o.png", "--size", "big"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"
    error: invalid value 'big' for '--size <PX>': invalid digit found in string

    For more information, try '--help'.
    ");
}

#[test]
fn unknown_flag() {
    let out = Sandbox::new().run(&["c.png", "s.png", "-o", "o.png", "--colour"]);
    assert_eq!(out.code, Some(2));
    insta::assert_snapshot!(out.stderr, @"
    error: unexpected argument '--colour' found

      tip: to pass '--colour' as a value, use '-- --colour'

    Usage: impasto --output <OUT> <CONTENT> <STYLE>...

    For more information, try '--help'.
    ");
}
