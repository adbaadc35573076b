//! Shared test helpers: finding the real weights like the CLI does, the shared data folder, tiny networks.

use std::path::PathBuf;

use impasto::{Arch, Pooling, Preprocess, Vgg};

/// `../shared` beside the repository (where CI puts it).
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// The real VGG-16 weights, found as the CLI finds them: `IMPASTO_WEIGHTS`, then the user cache.
/// Under CI (`CI=true`) a missing file is a failure, never a skip.
pub fn real_weights() -> Option<PathBuf> {
    let env = std::env::var_os("IMPASTO_WEIGHTS").map(PathBuf::from);
    let cache = directories::ProjectDirs::from("", "", "impasto").map(|d| d.cache_dir().to_path_buf());
    match impasto::locate_weights(Arch::Vgg16, None, env.as_deref(), cache.as_deref()) {
        Ok(p) => Some(p),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but the real weights are missing: {e}"
            );
            eprintln!("skipping: {e}");
            None
        }
    }
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
