//! The VGG architectures (owned by impasto-weights, which names them in checkpoints and downloads;
//! re-exported here) and how the network's pooling layers reduce.

pub use impasto_weights::{Arch, Layer, LayerKind};

/// How the 2×2 pooling layers reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pooling {
    /// Max pooling (the network as trained).
    #[default]
    Max,
    /// Average pooling (Gatys et al. report smoother results).
    Avg,
    /// L2 pooling: the root mean square of each window (crowsonkb/style-transfer-pytorch's `l2`,
    /// between max and average).
    L2,
}
