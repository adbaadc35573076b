//! Shared test helpers: finding the real weights like the CLI does, the shared data folder, tiny networks.

use std::path::PathBuf;

use impasto::{Arch, Pooling, Preprocess, Vgg};

/// `../shared` beside the repository (where CI puts it).
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Whether this is CI (`CI=true`), where missing real weights or shared files are a failure.
fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The real VGG-16 weights, found as the CLI finds them: `IMPASTO_WEIGHTS`, then the user cache.
fn find_real_weights() -> Result<PathBuf, impasto::Error> {
    let env = std::env::var_os("IMPASTO_WEIGHTS").map(PathBuf::from);
    let cache = directories::ProjectDirs::from("", "", "impasto").map(|d| d.cache_dir().to_path_buf());
    impasto::locate_weights(Arch::Vgg16, None, env.as_deref(), cache.as_deref())
}

/// The real VGG-16 weights, for the tests that need the full file (the PyTorch fixtures, the compact
/// model's error). `None` with a note when missing; under CI (`CI=true`) a failure, never a skip.
pub fn real_weights() -> Option<PathBuf> {
    match find_real_weights() {
        Ok(p) => Some(p),
        Err(e) => {
            assert!(!under_ci(), "CI=true but the real weights are missing: {e}");
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// A network for end-to-end runs and the style layers to use with it: the real VGG-16 down to
/// `deepest` with the default style layers when its weights are found; else (with a note; under CI a
/// failure) the built-in compact VGG-16, which stops at relu4_2, with its style layers, so that a fresh
/// clone without `../shared` still runs these tests.
pub fn run_net(pooling: Pooling, deepest: &str) -> (Vgg, Vec<String>) {
    match find_real_weights() {
        Ok(p) => {
            let net = Vgg::load(&p, Arch::Vgg16, pooling, None, deepest).expect("the real weights load");
            (net, impasto::StyleConfig::default().style_layers)
        }
        Err(e) => {
            assert!(!under_ci(), "CI=true but the real weights are missing: {e}");
            eprintln!("note: {e}; running on the built-in compact model");
            let deepest = if Arch::Vgg16.layer_index(deepest).expect("a VGG-16 layer")
                > Arch::Vgg16.layer_index(impasto::COMPACT_LAST_LAYER).expect("a VGG-16 layer")
            {
                impasto::COMPACT_LAST_LAYER
            } else {
                deepest
            };
            let net = Vgg::embedded(pooling, deepest).expect("the built-in model loads");
            (net, impasto::COMPACT_STYLE_LAYERS.map(String::from).to_vec())
        }
    }
}

/// An image of `../shared/images`, or (a fresh clone has no `../shared`; under CI a failure) a
/// `size`×`size` colour pattern in its place.
pub fn shared_image_or_pattern(name: &str, size: u32) -> impasto::image::Rgb32FImage {
    let path = shared_dir().join("images").join(name);
    if path.is_file() {
        return impasto::load_image(&path).expect("a shared image loads");
    }
    assert!(!under_ci(), "CI=true but {} is missing", path.display());
    impasto::image::Rgb32FImage::from_fn(size, size, |x, y| {
        let (u, v) = (x as f32 / size as f32, y as f32 / size as f32);
        impasto::image::Rgb([u, v, ((x * 7 + y * 3) % 17) as f32 / 17.0])
    })
}

/// A small deterministic pseudo-random generator for test data (xorshift64*), values in -1..1.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// A VGG with random weights for the first `n_convs` convolutions (He-style scale), for fast tests.
pub fn random_vgg(arch: Arch, pooling: Pooling, n_convs: usize, seed: u64) -> Vgg {
    let mut rng = Lcg(seed);
    let mut weights = Vec::new();
    for l in arch.layers() {
        if let impasto::LayerKind::Conv { c_in, c_out, conv, .. } = l.kind {
            if conv >= n_convs {
                break;
            }
            let scale = (2.0 / (9.0 * c_in as f32)).sqrt() * 1.7;
            weights.push((rng.vec(c_out * c_in * 9, scale), rng.vec(c_out, 0.1)));
        }
    }
    Vgg::from_tensors(arch, pooling, Preprocess::Torch, weights).expect("shapes match")
}
