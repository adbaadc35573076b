//! The temporal targets: long-term consistency holds a pixel to the nearest earlier frame that
//! reliably covers it and to no other, reaches background that the previous frame hid, and its frame
//! offsets are checked with one clear error; a frame revisited in a later pass starts halfway to its
//! neighbour where the flow is reliable and from its own result where it is not.

use image::Rgb32FImage;
use impasto_video::{Earlier, FlowParams, Plane, carry_over, long_term_masks, parse_offsets, revisit};

use crate::synth::{Object, SIDE, SIZE};

fn plane(values: &[f32]) -> Plane {
    Plane { width: values.len(), height: 1, data: values.to_vec() }
}

#[test]
fn each_pixel_is_held_to_the_nearest_frame_that_covers_it() {
    let masks = [plane(&[1.0, 0.0, 1.0, 0.0, 0.0]), plane(&[1.0, 1.0, 0.0, 0.0, 0.0]), plane(&[1.0; 5])];
    let c = long_term_masks(&masks);
    assert_eq!(c[0].data, [1.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(c[1].data, [0.0, 1.0, 0.0, 0.0, 0.0], "pixels the previous frame covers are excluded");
    assert_eq!(c[2].data, [0.0, 0.0, 0.0, 1.0, 1.0]);
}

fn rgb(p: &Plane) -> Rgb32FImage {
    image::Rgb32FImage::from_fn(p.width as u32, p.height as u32, |x, y| {
        image::Rgb([p.at(x as usize, y as usize) / 255.0; 3])
    })
}

fn grey(v: f32) -> Rgb32FImage {
    Rgb32FImage::from_pixel(SIZE as u32, SIZE as u32, image::Rgb([v; 3]))
}

#[test]
fn long_term_reaches_background_the_previous_frame_hid() {
    // The object moves right and back: the strip it uncovers in frame t was hidden in t−1 but
    // visible in t−2. The stylised frames are flat greys, so the target tells which frame it came from.
    let (p, q) = ((30, 34), (36, 34));
    let o = Object { from: p, to: q };
    let (f2, f1, f0) = (rgb(&o.frame(p)), rgb(&o.frame(q)), rgb(&o.frame(p)));
    let (r2, r1) = (grey(0.8), grey(0.2));
    let params = FlowParams::default();
    let near = Earlier { content: &f1, result: &r1 };
    let far = Earlier { content: &f2, result: &r2 };
    let (_, short_mask) = carry_over(&[near], &f0, &params);
    let (target, mask) = carry_over(&[near, far], &f0, &params);
    let at = |img: &Rgb32FImage, x: usize, y: usize| img.get_pixel(x as u32, y as u32).0[0];

    // The uncovered strip, one pixel in from its edges.
    let (mut strip, mut short_kept, mut long_kept, mut from_far) = (0, 0, 0, 0);
    for y in q.1 + 1..q.1 + SIDE - 1 {
        for x in p.0 + SIDE + 1..q.0 + SIDE - 1 {
            strip += 1;
            short_kept += usize::from(short_mask.at(x, y) > 0.5);
            long_kept += usize::from(mask.at(x, y) > 0.5);
            from_far += usize::from((at(&target, x, y) - 0.8).abs() < 0.05);
        }
    }
    eprintln!(
        "uncovered strip: {strip} px, short-term keeps {short_kept}, long-term {long_kept}, {from_far} from t−2"
    );
    assert!(short_kept * 5 <= strip, "the previous frame hid the strip: {short_kept} of {strip} kept");
    assert!(long_kept * 10 >= strip * 8, "long-term keeps only {long_kept} of {strip}");
    assert!(from_far * 10 >= strip * 8, "only {from_far} of {strip} held to frame t−2");

    // Where the previous frame covers a pixel, frame t−2 does not count, although it covers it too.
    let (mut far_bg, mut from_near) = (0, 0);
    for y in 4..SIZE - 4 {
        for x in 4..SIZE - 4 {
            if x + 12 < p.0 || y + 12 < p.1 {
                far_bg += 1;
                from_near += usize::from(mask.at(x, y) == 1.0 && (at(&target, x, y) - 0.2).abs() < 1e-4);
            }
        }
    }
    assert_eq!(from_near, far_bg, "pixels the previous frame covers are held to it alone");
}

#[test]
fn a_revisited_frame_starts_halfway_to_its_neighbour_where_the_flow_is_reliable() {
    // The neighbour (processed just before, flat 0.8) shows the object at p, this frame at q: the
    // strip the object uncovers has no match there and keeps the frame's own last result (0.2).
    let (p, q) = ((30, 34), (36, 34));
    let o = Object { from: p, to: q };
    let (near, this) = (rgb(&o.frame(p)), rgb(&o.frame(q)));
    let (own, theirs) = (grey(0.2), grey(0.8));
    let r = revisit(&own, &this, Earlier { content: &near, result: &theirs }, &FlowParams::default());
    let at = |img: &Rgb32FImage, x: usize, y: usize| img.get_pixel(x as u32, y as u32).0[0];
    let (mut strip, mut own_kept) = (0, 0);
    for y in q.1 + 1..q.1 + SIDE - 1 {
        for x in p.0 + 1..q.0 - 1 {
            strip += 1;
            own_kept += usize::from(r.mask.at(x, y) == 0.0 && (at(&r.init, x, y) - 0.2).abs() < 1e-6);
        }
    }
    assert!(
        own_kept * 10 >= strip * 8,
        "only {own_kept} of {strip} uncovered pixels start from their own result"
    );
    let (mut far, mut halfway) = (0, 0);
    for y in 4..SIZE - 4 {
        for x in 4..SIZE - 4 {
            if x + 12 < p.0 || y + 12 < p.1 {
                far += 1;
                let held = r.mask.at(x, y) == 1.0 && (at(&r.target, x, y) - 0.8).abs() < 1e-4;
                halfway += usize::from(held && (at(&r.init, x, y) - 0.5).abs() < 1e-4);
            }
        }
    }
    assert_eq!(halfway, far, "the static background starts halfway and is held to the neighbour");
}

#[test]
fn frame_offsets_parse_and_bad_ones_are_refused_on_one_line() {
    assert_eq!(parse_offsets("1").unwrap(), [1]);
    assert_eq!(parse_offsets("1,2,4").unwrap(), [1, 2, 4]);
    assert_eq!(parse_offsets(" 1, 3 ,10").unwrap(), [1, 3, 10]);
    for (given, why) in [
        ("2,4", "invalid frame offsets `2,4`: the list must start with 1 (the previous frame)"),
        ("1,4,2", "invalid frame offsets `1,4,2`: the offsets must increase"),
        ("1,1", "invalid frame offsets `1,1`: the offsets must increase"),
        ("1,x", "invalid frame offsets `1,x`: `x` is not a whole number of frames"),
        ("", "invalid frame offsets ``: `` is not a whole number of frames"),
        ("0,1", "invalid frame offsets `0,1`: 0 is not between 1 and 64"),
        ("1,65", "invalid frame offsets `1,65`: 65 is not between 1 and 64"),
    ] {
        let e = parse_offsets(given).unwrap_err().to_string();
        assert_eq!(e, why);
        assert!(!e.contains('\n'));
    }
}
