//! Image files in and out: orientation, ICC, bit depths and colour types, alpha, output formats, metadata, limits.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use impasto::image::codecs::jpeg::JpegEncoder;
use impasto::image::codecs::png::PngEncoder;
use impasto::image::{self, ExtendedColorType, ImageEncoder, Rgb, Rgb32FImage};
use impasto::{
    AlphaPlane, Error, SOFTWARE, SaveOptions, as_saved, load_image, load_image_with_alpha, save_image,
    save_image_with,
};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Encodes raw samples as PNG with the `png` crate (16-bit samples given as u16, written big-endian).
fn png_bytes(
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    palette: Option<(&[u8], &[u8])>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(color);
    enc.set_depth(depth);
    if let Some((plte, trns)) = palette {
        enc.set_palette(plte.to_vec());
        enc.set_trns(trns.to_vec());
    }
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(data).unwrap();
    wr.finish().unwrap();
    out
}

fn be16(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn assert_px(img: &Rgb32FImage, x: u32, y: u32, want: [f32; 3], tol: f32) {
    let got = img.get_pixel(x, y).0;
    for c in 0..3 {
        assert!((got[c] - want[c]).abs() <= tol, "pixel ({x},{y}): got {got:?}, want {want:?} (±{tol})");
    }
}

fn decode_reason(r: impasto::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::ImageDecode { reason, .. }) => reason,
        other => panic!("expected ImageDecode, got {other:?}"),
    }
}

fn encode_reason(r: impasto::Result<()>) -> String {
    match r {
        Err(Error::ImageEncode { reason, .. }) => reason,
        other => panic!("expected ImageEncode, got {other:?}"),
    }
}

/// A smooth test image: a gradient, so that JPEG round trips stay close.
fn gradient(w: u32, h: u32) -> Rgb32FImage {
    Rgb32FImage::from_fn(w, h, |x, y| {
        Rgb([x as f32 / (w - 1) as f32, y as f32 / (h - 1) as f32, 0.123_456 + 0.5 * x as f32 / w as f32])
    })
}

fn max_diff(a: &Rgb32FImage, b: &Rgb32FImage) -> f32 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

// ---------------------------------------------------------------- EXIF orientation

/// A little-endian TIFF-structured EXIF block with IFD0 holding Orientation (0x0112) = `value`.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut b = b"II*\0".to_vec();
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&0x0112u16.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&value.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

#[test]
fn exif_orientation_6_rotates_a_jpeg() {
    let d = dir();
    // 16×8: left half red, right half blue.
    let src = image::RgbImage::from_fn(16, 8, |x, _| if x < 8 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    let mut bytes = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut bytes, 100);
    enc.set_exif_metadata(exif_orientation(6)).unwrap();
    enc.write_image(src.as_raw(), 16, 8, ExtendedColorType::Rgb8).unwrap();
    let p = write(d.path(), "rot6.jpg", &bytes);
    let img = load_image(&p).unwrap();
    assert_eq!(img.dimensions(), (8, 16), "orientation 6 swaps width and height");
    // Rotating 90° clockwise puts the left (red) half on top.
    assert_px(&img, 4, 2, [1.0, 0.0, 0.0], 0.1);
    assert_px(&img, 4, 13, [0.0, 0.0, 1.0], 0.1);
}

#[test]
fn bytes_in_memory_decode_like_the_file() {
    let d = dir();
    let src = image::RgbImage::from_fn(16, 8, |x, y| Rgb([x as u8 * 16, y as u8 * 32, 7]));
    let mut bytes = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut bytes, 90);
    enc.set_exif_metadata(exif_orientation(6)).unwrap();
    enc.write_image(src.as_raw(), 16, 8, ExtendedColorType::Rgb8).unwrap();
    let from_file = load_image(&write(d.path(), "a.jpg", &bytes)).unwrap();
    let from_memory = impasto::decode_image(&bytes, "upload.jpg").unwrap();
    assert!(from_file == from_memory, "decoding from memory differs from reading the file");
    let err = impasto::decode_image(b"not an image", "notes.txt").unwrap_err().to_string();
    assert_eq!(err, "cannot decode image notes.txt: unrecognised or unsupported image format");
}

// ---------------------------------------------------------------- ICC

fn png_with_icc(rgb: &[u8], w: u32, h: u32, icc: Vec<u8>, color: ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = PngEncoder::new(&mut out);
    enc.set_icc_profile(icc).unwrap();
    enc.write_image(rgb, w, h, color).unwrap();
    out
}

fn srgb_decode(v: f32) -> f32 {
    if v <= 0.04045 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
}

fn srgb_encode(v: f32) -> f32 {
    let v = v.clamp(0.0, 1.0);
    if v <= 0.003_130_8 { v * 12.92 } else { 1.055 * v.powf(1.0 / 2.4) - 0.055 }
}

/// Display P3 → sRGB by hand: the same transfer curve, the linear-light matrix between the primaries
/// (both D65), then clipping.
fn p3_to_srgb(p: [u8; 3]) -> [f32; 3] {
    const M: [[f32; 3]; 3] =
        [[1.224_94, -0.224_94, 0.0], [-0.042_057, 1.042_057, 0.0], [-0.019_638, -0.078_636, 1.098_274]];
    let lin = p.map(|v| srgb_decode(v as f32 / 255.0));
    let mut out = [0.0; 3];
    for (o, row) in out.iter_mut().zip(&M) {
        *o = srgb_encode(row[0] * lin[0] + row[1] * lin[1] + row[2] * lin[2]);
    }
    out
}

#[test]
fn display_p3_png_is_converted_to_srgb() {
    let d = dir();
    let colours: [[u8; 3]; 4] = [[255, 0, 0], [200, 60, 40], [40, 200, 60], [128, 128, 128]];
    let raw: Vec<u8> = colours.iter().flatten().copied().collect();
    let icc = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let p = write(d.path(), "p3.png", &png_with_icc(&raw, 4, 1, icc, ExtendedColorType::Rgb8));
    let img = load_image(&p).unwrap();
    for (x, c) in colours.iter().enumerate() {
        assert_px(&img, x as u32, 0, p3_to_srgb(*c), 0.01);
    }
    // The mid-saturated red really moved (not just clipped): the raw value is far off.
    let raw_red = [200.0 / 255.0, 60.0 / 255.0, 40.0 / 255.0];
    let got = img.get_pixel(1, 0).0;
    assert!((got[0] - raw_red[0]).abs() > 0.03, "P3 red unchanged: {got:?}");
    // Grey stays grey.
    let g = img.get_pixel(3, 0).0;
    assert!((g[0] - g[1]).abs() < 0.005 && (g[1] - g[2]).abs() < 0.005, "{g:?}");
}

#[test]
fn srgb_profile_leaves_values_exact() {
    let d = dir();
    let raw: Vec<u8> = (0..48).map(|i| (i * 5) as u8).collect();
    let icc = moxcms::ColorProfile::new_srgb().encode().unwrap();
    let p = write(d.path(), "srgb.png", &png_with_icc(&raw, 4, 4, icc, ExtendedColorType::Rgb8));
    let img = load_image(&p).unwrap();
    for (got, want) in img.as_raw().iter().zip(&raw) {
        assert_eq!(*got, *want as f32 / 255.0);
    }
}

#[test]
fn grey_profile_is_applied_to_grey_images() {
    let d = dir();
    let raw = [0u8, 51, 128, 255];
    let icc = moxcms::ColorProfile::new_gray_with_gamma(2.2).encode().unwrap();
    let p = write(d.path(), "grey22.png", &png_with_icc(&raw, 4, 1, icc, ExtendedColorType::L8));
    let img = load_image(&p).unwrap();
    for (x, v) in raw.iter().enumerate() {
        let want = srgb_encode((*v as f32 / 255.0).powf(2.2));
        assert_px(&img, x as u32, 0, [want; 3], 0.01);
    }
}

// ---------------------------------------------------------------- bit depths and colour types

#[test]
fn sixteen_bit_png_and_tiff_keep_full_precision() {
    let d = dir();
    let samples: [u16; 6] = [0, 1, 32_768, 65_535, 12_345, 54_321];
    let png = png_bytes(2, 1, png::ColorType::Rgb, png::BitDepth::Sixteen, &be16(&samples), None);
    let mut tiff = Cursor::new(Vec::new());
    let tiff_img = image::ImageBuffer::<Rgb<u16>, _>::from_raw(2, 1, samples.to_vec()).unwrap();
    image::DynamicImage::ImageRgb16(tiff_img).write_to(&mut tiff, image::ImageFormat::Tiff).unwrap();
    for (name, bytes) in [("a.png", png), ("a.tif", tiff.into_inner())] {
        let img = load_image(&write(d.path(), name, &bytes)).unwrap();
        for (got, want) in img.as_raw().iter().zip(&samples) {
            assert!((got - *want as f32 / 65_535.0).abs() < 1e-6, "{name}: {got} vs {want}");
        }
    }
}

#[test]
fn as_saved_is_what_a_saved_file_reads_back_as() {
    let d = dir();
    // Values between steps, on a step's half, and outside 0..1.
    let img = Rgb32FImage::from_fn(7, 5, |x, y| {
        let v = (x * 5 + y) as f32 / 33.0 + 1.0 / 131_071.0;
        Rgb([v, 1.0 - v * 1.3, if x == 0 { -0.2 } else { 1.0 / 510.0 + y as f32 * 0.3 }])
    });
    for (depth, ext) in [(16, "png"), (16, "tif"), (8, "png"), (8, "tif")] {
        let p = d.path().join(format!("q{depth}.{ext}"));
        save_image_with(&img, &p, &SaveOptions { depth, ..SaveOptions::default() }).unwrap();
        let back = load_image(&p).unwrap();
        let kept = as_saved(&img, depth);
        let bits = |i: &Rgb32FImage| i.as_raw().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&kept), bits(&back), "{depth}-bit {ext}");
    }
}

#[test]
fn grey_grey_alpha_palette_and_rgba_pngs_load_as_rgb() {
    let d = dir();
    // Grey 8-bit.
    let img = load_image(&write(
        d.path(),
        "g8.png",
        &png_bytes(2, 1, png::ColorType::Grayscale, png::BitDepth::Eight, &[0, 200], None),
    ))
    .unwrap();
    assert_px(&img, 1, 0, [200.0 / 255.0; 3], 1e-6);
    // Grey 16-bit.
    let img = load_image(&write(
        d.path(),
        "g16.png",
        &png_bytes(2, 1, png::ColorType::Grayscale, png::BitDepth::Sixteen, &be16(&[0, 40_000]), None),
    ))
    .unwrap();
    assert_px(&img, 1, 0, [40_000.0 / 65_535.0; 3], 1e-6);
    // Grey + alpha.
    let p = write(
        d.path(),
        "ga.png",
        &png_bytes(2, 1, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight, &[100, 255, 50, 0], None),
    );
    let (img, alpha) = load_image_with_alpha(&p).unwrap();
    assert_px(&img, 0, 0, [100.0 / 255.0; 3], 1e-6);
    assert_px(&img, 1, 0, [50.0 / 255.0; 3], 1e-6);
    let alpha = alpha.expect("grey+alpha has an alpha plane");
    assert_eq!(alpha.as_raw(), &vec![1.0, 0.0]);
    // Palette with a transparent entry.
    let plte = [255, 0, 0, 0, 255, 0];
    let p = write(
        d.path(),
        "pal.png",
        &png_bytes(2, 1, png::ColorType::Indexed, png::BitDepth::Eight, &[0, 1], Some((&plte, &[255, 128]))),
    );
    let (img, alpha) = load_image_with_alpha(&p).unwrap();
    assert_px(&img, 0, 0, [1.0, 0.0, 0.0], 1e-6);
    assert_px(&img, 1, 0, [0.0, 1.0, 0.0], 1e-6);
    let alpha = alpha.expect("tRNS gives alpha");
    assert!((alpha.get_pixel(1, 0).0[0] - 128.0 / 255.0).abs() < 1e-6);
    // RGBA 8-bit; load_image drops alpha.
    let p = write(
        d.path(),
        "rgba.png",
        &png_bytes(1, 1, png::ColorType::Rgba, png::BitDepth::Eight, &[10, 20, 30, 40], None),
    );
    assert_px(&load_image(&p).unwrap(), 0, 0, [10.0 / 255.0, 20.0 / 255.0, 30.0 / 255.0], 1e-6);
}

#[test]
fn cmyk_jpeg_loads_as_rgb() {
    // Made by tests/data/make_cmyk.py: cyan, magenta / yellow, black quadrants.
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/cmyk.jpg");
    let img = load_image(&p).unwrap();
    assert_eq!(img.dimensions(), (16, 16));
    assert_px(&img, 3, 3, [0.0, 1.0, 1.0], 0.06);
    assert_px(&img, 12, 3, [1.0, 0.0, 1.0], 0.06);
    assert_px(&img, 3, 12, [1.0, 1.0, 0.0], 0.06);
    assert_px(&img, 12, 12, [0.0, 0.0, 0.0], 0.06);
}

// ---------------------------------------------------------------- alpha

#[test]
fn opaque_or_missing_alpha_is_none() {
    let d = dir();
    let p = write(
        d.path(),
        "opaque.png",
        &png_bytes(1, 1, png::ColorType::Rgba, png::BitDepth::Eight, &[1, 2, 3, 255], None),
    );
    assert!(load_image_with_alpha(&p).unwrap().1.is_none());
    let p = write(
        d.path(),
        "rgb.png",
        &png_bytes(1, 1, png::ColorType::Rgb, png::BitDepth::Eight, &[1, 2, 3], None),
    );
    assert!(load_image_with_alpha(&p).unwrap().1.is_none());
}

#[test]
fn alpha_is_written_back_and_resized() {
    let d = dir();
    let img = gradient(8, 8);
    // A 4×4 plane: left half transparent, right half opaque.
    let alpha = AlphaPlane::from_fn(4, 4, |x, _| image::Luma([if x < 2 { 0.0 } else { 1.0 }]));
    for ext in ["png", "webp", "tif", "bmp"] {
        let p = d.path().join(format!("a.{ext}"));
        save_image_with(&img, &p, &SaveOptions { alpha: Some(alpha.clone()), ..SaveOptions::default() })
            .unwrap();
        let (back, a) = load_image_with_alpha(&p).unwrap();
        assert_eq!(back.dimensions(), (8, 8), "{ext}");
        let a = a.unwrap_or_else(|| panic!("{ext}: alpha lost"));
        assert_eq!(a.dimensions(), (8, 8));
        assert!(a.get_pixel(0, 3).0[0] < 0.05 && a.get_pixel(7, 3).0[0] > 0.95, "{ext}");
        assert!(max_diff(&back, &img) < 1.0 / 255.0, "{ext}: colour changed");
    }
    // JPEG has no alpha: the plane is dropped, the colour written.
    let p = d.path().join("a.jpg");
    save_image_with(&img, &p, &SaveOptions { alpha: Some(alpha), ..SaveOptions::default() }).unwrap();
    assert!(load_image_with_alpha(&p).unwrap().1.is_none());
}

// ---------------------------------------------------------------- output formats

#[test]
fn every_output_format_round_trips() {
    let d = dir();
    let img = gradient(24, 16);
    for (ext, tol) in [
        ("png", 0.5 / 255.0 + 1e-6),
        ("jpg", 0.04),
        ("jpeg", 0.04),
        ("webp", 0.5 / 255.0 + 1e-6),
        ("tif", 0.5 / 255.0 + 1e-6),
        ("tiff", 0.5 / 255.0 + 1e-6),
        ("bmp", 0.5 / 255.0 + 1e-6),
    ] {
        let p = d.path().join(format!("out.{ext}"));
        save_image(&img, &p).unwrap();
        let back = load_image(&p).unwrap();
        let diff = max_diff(&back, &img);
        assert!(diff <= tol, "{ext}: max difference {diff}");
    }
    // Nothing but the outputs is left in the folder (the temporary files were renamed).
    let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 7, "{names:?}");
}

#[test]
fn sixteen_bit_output_for_png_and_tiff_only() {
    let d = dir();
    let img = gradient(8, 8);
    let opts = SaveOptions { depth: 16, ..SaveOptions::default() };
    for ext in ["png", "tif"] {
        let p = d.path().join(format!("d16.{ext}"));
        save_image_with(&img, &p, &opts).unwrap();
        let back = load_image(&p).unwrap();
        assert!(max_diff(&back, &img) < 1e-4, "{ext}: not 16-bit");
        let dyn_img = image::open(&p).unwrap();
        assert!(matches!(dyn_img.color(), image::ColorType::Rgb16), "{ext}: {:?}", dyn_img.color());
    }
    for ext in ["jpg", "webp", "bmp"] {
        let p = d.path().join(format!("d16.{ext}"));
        let reason = encode_reason(save_image_with(&img, &p, &opts));
        assert!(reason.contains("16-bit"), "{reason}");
        assert!(!p.exists());
    }
    let reason = encode_reason(save_image_with(
        &img,
        &d.path().join("x.png"),
        &SaveOptions { depth: 12, ..SaveOptions::default() },
    ));
    assert!(reason.contains("8 or 16"), "{reason}");
    let reason = encode_reason(save_image_with(&img, &d.path().join("x.gif"), &SaveOptions::default()));
    assert!(reason.contains("unsupported output extension"), "{reason}");
}

#[test]
fn jpeg_quality_and_no_chroma_subsampling() {
    let d = dir();
    let mut rng = 12_345u64;
    let noisy = Rgb32FImage::from_fn(32, 32, |_, _| {
        let mut next = || {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (rng >> 40) as f32 / (1u64 << 24) as f32
        };
        Rgb([next(), next(), next()])
    });
    let size = |q: u8| {
        let p = d.path().join(format!("q{q}.jpg"));
        save_image_with(&noisy, &p, &SaveOptions { quality: q, ..SaveOptions::default() }).unwrap();
        std::fs::read(&p).unwrap()
    };
    let (low, high) = (size(20), size(100));
    assert!(low.len() < high.len() / 2, "quality has no effect: {} vs {}", low.len(), high.len());
    // SOF0: marker, length, precision, height, width, 3 components of (id, sampling HV, table).
    let sof = high.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF0");
    assert_eq!(high[sof + 9], 3);
    for c in 0..3 {
        assert_eq!(high[sof + 11 + 3 * c], 0x11, "component {c} is subsampled");
    }
    for q in [0u8, 101] {
        let reason = encode_reason(save_image_with(
            &noisy,
            &d.path().join("bad.jpg"),
            &SaveOptions { quality: q, ..SaveOptions::default() },
        ));
        assert!(reason.contains("quality"), "{reason}");
    }
}

#[test]
fn saving_replaces_an_existing_file() {
    let d = dir();
    let p = d.path().join("same.png");
    save_image(&gradient(4, 4), &p).unwrap();
    save_image(&gradient(6, 5), &p).unwrap();
    assert_eq!(load_image(&p).unwrap().dimensions(), (6, 5));
}

// ---------------------------------------------------------------- metadata

fn params() -> Vec<(String, String)> {
    vec![("parameters".into(), "--style-weight 1e5 --size 512 — «ünïcode»".into())]
}

#[test]
fn png_metadata_is_in_text_chunks() {
    let d = dir();
    let p = d.path().join("meta.png");
    let mut meta = params();
    meta.push(("impasto".into(), "ascii only".into()));
    save_image_with(&gradient(4, 4), &p, &SaveOptions { metadata: meta, ..SaveOptions::default() }).unwrap();
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap()));
    let reader = dec.read_info().unwrap();
    let info = reader.info();
    let latin1: Vec<_> =
        info.uncompressed_latin1_text.iter().map(|t| (t.keyword.as_str(), t.text.as_str())).collect();
    assert!(latin1.contains(&("Software", SOFTWARE)), "{latin1:?}");
    assert!(latin1.contains(&("impasto", "ascii only")), "{latin1:?}");
    let utf8 = info.utf8_text.iter().find(|t| t.keyword == "parameters").expect("iTXt parameters");
    assert_eq!(utf8.get_text().unwrap(), params()[0].1);
    assert!(SOFTWARE.starts_with("impasto "));
    // Plain save_image still names the software.
    let p2 = d.path().join("plain.png");
    save_image(&gradient(4, 4), &p2).unwrap();
    let reader =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p2).unwrap())).read_info().unwrap();
    assert!(
        reader.info().uncompressed_latin1_text.iter().any(|t| t.keyword == "Software" && t.text == SOFTWARE)
    );
}

#[test]
fn jpeg_and_webp_metadata_is_in_exif() {
    let d = dir();
    for ext in ["jpg", "webp"] {
        let p = d.path().join(format!("meta.{ext}"));
        save_image_with(&gradient(4, 4), &p, &SaveOptions { metadata: params(), ..SaveOptions::default() })
            .unwrap();
        // The decoder finds the EXIF block, which holds both strings.
        let mut dec = image::ImageReader::open(&p).unwrap().into_decoder().unwrap();
        let exif =
            image::ImageDecoder::exif_metadata(&mut dec).unwrap().unwrap_or_else(|| panic!("{ext}: no EXIF"));
        let find = |s: &str| exif.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(find(&format!("parameters: {}", params()[0].1)), "{ext}: description missing");
        assert!(find(SOFTWARE), "{ext}: software missing");
        assert!(exif.starts_with(b"II*\0"));
        // And the file still loads.
        assert_eq!(load_image(&p).unwrap().dimensions(), (4, 4));
    }
    let reason = encode_reason(save_image_with(
        &gradient(4, 4),
        &d.path().join("k.png"),
        &SaveOptions { metadata: vec![(String::new(), "x".into())], ..SaveOptions::default() },
    ));
    assert!(reason.contains("metadata key"), "{reason}");
}

// ---------------------------------------------------------------- limits and broken files

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A valid 1×1 PNG whose IHDR is patched to claim `w`×`h` (with a correct CRC), so only the header lies.
fn png_claiming(w: u32, h: u32, color: png::ColorType, depth: png::BitDepth) -> Vec<u8> {
    let samples = match color {
        png::ColorType::Rgba => 4,
        _ => 3,
    } * if depth == png::BitDepth::Sixteen { 2 } else { 1 };
    let mut b = png_bytes(1, 1, color, depth, &vec![0; samples], None);
    assert_eq!(&b[12..16], b"IHDR");
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn decompression_bombs_are_refused() {
    let d = dir();
    let p = write(
        d.path(),
        "bomb.png",
        &png_claiming(100_000, 100_000, png::ColorType::Rgb, png::BitDepth::Eight),
    );
    let reason = decode_reason(load_image(&p));
    assert!(
        reason.contains("too large") && reason.contains("100000×100000") && reason.contains("32768"),
        "{reason}"
    );
    let p = write(d.path(), "wide.png", &png_claiming(40_000, 1, png::ColorType::Rgb, png::BitDepth::Eight));
    assert!(decode_reason(load_image_with_alpha(&p)).contains("too large"));
    // Within the side limit but over the memory limit: 30000² RGBA16 is 7.2 GB.
    let p = write(
        d.path(),
        "heavy.png",
        &png_claiming(30_000, 30_000, png::ColorType::Rgba, png::BitDepth::Sixteen),
    );
    let reason = decode_reason(load_image(&p));
    assert!(reason.contains("too large") && reason.contains("MiB"), "{reason}");
}

#[test]
fn corrupt_and_truncated_files_are_errors_not_panics() {
    let d = dir();
    let img = gradient(16, 12);
    for ext in ["png", "jpg", "webp", "tif", "bmp"] {
        let good = d.path().join(format!("good.{ext}"));
        save_image(&img, &good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let bad = d.path().join(format!("bad.{ext}"));
        let mut cuts: Vec<usize> = (0..bytes.len()).step_by(7).collect();
        cuts.push(bytes.len() - 1);
        for cut in cuts {
            std::fs::write(&bad, &bytes[..cut]).unwrap();
            match load_image(&bad) {
                Ok(_) | Err(Error::ImageDecode { .. }) => {}
                Err(e) => panic!("{ext} cut at {cut}: {e:?}"),
            }
        }
        // A PNG or JPEG cut anywhere is always an error: nothing partial is ever returned.
        if ext == "png" || ext == "jpg" {
            for cut in 0..bytes.len() {
                std::fs::write(&bad, &bytes[..cut]).unwrap();
                decode_reason(load_image(&bad));
            }
        }
        // Flipped bytes after the header.
        for i in (8..bytes.len()).step_by(5) {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            std::fs::write(&bad, &b).unwrap();
            match load_image(&bad) {
                Ok(_) | Err(Error::ImageDecode { .. }) => {}
                Err(e) => panic!("{ext} flipped at {i}: {e:?}"),
            }
        }
    }
    let p = write(d.path(), "garbage.png", b"this is not an image at all");
    decode_reason(load_image(&p));
    let reason = decode_reason(load_image(&d.path().join("missing.png")));
    assert!(reason.contains("no such file"), "{reason}");
}

#[test]
fn a_jpeg_or_png_cut_short_is_refused_as_truncated() {
    let d = dir();
    // Large enough that a cut mid-scan leaves whole rows the decoder could fill with grey.
    let img = gradient(64, 48);
    for (ext, why) in [
        ("jpg", "the JPEG data ends before its end-of-image marker"),
        ("png", "the PNG data ends before its IEND chunk"),
    ] {
        let good = d.path().join(format!("good.{ext}"));
        save_image(&img, &good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        for cut in [bytes.len() * 2 / 3, bytes.len() - 2, bytes.len() - 1] {
            let p = write(d.path(), &format!("cut.{ext}"), &bytes[..cut]);
            let reason = decode_reason(load_image(&p));
            // The decoder's own message when it notices, else the missing end marker.
            assert!(reason.starts_with("the file is truncated ("), "{ext} cut at {cut}: {reason}");
            if ext == "jpg" {
                assert_eq!(reason, format!("the file is truncated ({why})"), "cut at {cut}/{}", bytes.len());
            }
            let reason = decode_reason(impasto::decode_image(&bytes[..cut], "upload"));
            assert!(reason.starts_with("the file is truncated"), "{reason}");
        }
        // Data after the end marker (some cameras append some) is fine.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"trailing bytes");
        let p = write(d.path(), &format!("trailing.{ext}"), &longer);
        assert_eq!(load_image(&p).unwrap().dimensions(), (64, 48));
    }
}
