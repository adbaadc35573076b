//! Tiled refinement: large scales optimised in overlapping tiles so that memory stays bounded. The
//! plan of the tiles, their smooth blend weights and stitching, the style targets of images too large
//! for one pass, the memory estimates (CPU and GPU) and the GPU's limits that decide when to tile, and
//! the seam measure.

mod blend;
mod gpu;
mod gpu_estimate;
mod gram;
mod memory;
mod plan;
mod seam;
mod store;

pub use crate::run::{JobProgress, TileJob, prepare_tiles, run_tiles, stitch_tiles};
pub use blend::{blend_tile, crop_planar, stitch};
pub(crate) use blend::{crop_plane, finish, reaching, stitch_some};
pub use gpu::{DEFAULT_GPU_MEMORY_SHARE, GpuLimits, gpu_budget};
pub(crate) use gpu::{Misfit, gram_tile, objective_misfit, objective_scratch};
pub use gpu_estimate::{estimate_gpu_peak, gpu_weight_bytes};
pub use gram::{GRAM_HALO, style_grams};
pub(crate) use gram::{region_grams, region_moments, tiled_grams};
pub use memory::{BASELINE_BYTES, estimate_peak, estimate_tiled_peak, fmt_bytes};
pub use plan::{Axis, Rect, TILE_ALIGN, TilePlan};
pub use seam::{NEARBY, Seams, seams};
pub use store::TileStore;
pub(crate) use store::{read_tensor, write_tensor};

/// The default least overlap between neighbouring tiles (pixels): where a tile's loss gradient has
/// come within 1 % of the whole image's (measured on VGG-16, see BENCHMARKS.md).
pub const TILE_OVERLAP: u32 = 80;

/// Default rounds over a tiled scale's tiles, coupled through the whole image's style (measured in
/// BENCHMARKS.md, "Tiles coupled through the whole image's style").
pub const TILE_ROUNDS: usize = 2;

/// The smallest tile side for tiles overlapping by `overlap`: two overlaps and four alignment steps,
/// so that no pixel is in more than two tiles along an axis wherever the aligned starts fall.
pub fn min_tile(overlap: u32) -> u32 {
    2 * overlap + 4 * TILE_ALIGN
}
