//! The size of a run's output, and its final image at that size: a run stopped at a coarse scale
//! (cancelled, out of time, converged) is scaled up to the size asked for, as every client writes it.

use image::Rgb32FImage;

use crate::StyleConfig;
use crate::pixels::{fit_longest_side, resize};

/// The output size of a run of `config` on a `content` image of that size: the content's aspect
/// ratio, longest side [`StyleConfig::size`] (the size of the run's last scale).
pub fn output_size(content: (u32, u32), config: &StyleConfig) -> (u32, u32) {
    fit_longest_side(content.0, content.1, config.size)
}

/// `image` at `size`: unchanged when it has that size already, else resized (Lanczos3).
pub fn at_output_size(image: Rgb32FImage, size: (u32, u32)) -> Rgb32FImage {
    if image.dimensions() == size { image } else { resize(&image, size.0, size.1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coarse_image_is_scaled_up_to_the_output_size() {
        let config = StyleConfig { size: 64, ..StyleConfig::default() };
        assert_eq!(output_size((300, 150), &config), (64, 32));
        assert_eq!(output_size((10, 40), &config), (16, 64));
        let coarse = Rgb32FImage::from_pixel(32, 16, image::Rgb([0.25, 0.5, 0.75]));
        let out = at_output_size(coarse.clone(), (64, 32));
        assert_eq!(out.dimensions(), (64, 32));
        let centre = out.get_pixel(32, 16).0;
        assert!(centre.iter().zip([0.25, 0.5, 0.75]).all(|(a, b)| (a - b).abs() < 1e-3), "{centre:?}");
        // At its size already: the very same pixels.
        assert_eq!(at_output_size(coarse.clone(), (32, 16)), coarse);
    }
}
