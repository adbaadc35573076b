//! The page end to end in a real headless Chromium with the real VGG-16: see a fake image refused with
//! the server's message, then pick two images from ../shared/images, start a small coarse-to-fine run,
//! see two different preview frames, lower the style weight with the keyboard mid-run and see the style
//! loss drop by that factor at the next step, see the second scale, pause, download a PNG that decodes,
//! reload the page and find the run again, resume and cancel — on a server that requires its access
//! token, opened from its token URL, under its Content-Security-Policy. Writes a screenshot (the README's
//! docs/serve.png is one). Without Chromium it skips, except under CI=true, where it fails.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use impasto::{Arch, Pooling, Vgg};
use impasto_serve::Limits;

use crate::cdp::{Browser, chromium_path};
use crate::common::{TestServer, real_weights, shared_image, under_ci};

/// A fingerprint of the preview image as the page shows it (null until one is loaded).
const FRAME: &str = "(() => { const i = document.querySelector('#preview');
  if (!i.getAttribute('src') || !i.complete || !i.naturalWidth) return null;
  const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(i, 0, 0);
  let h = 0; for (const v of g.getImageData(0, 0, c.width, c.height).data) h = (h * 31 + v) >>> 0;
  return i.naturalWidth + 'x' + i.naturalHeight + ':' + h; })()";

/// The style loss of the first step under new weights over that of the step before, from the page's
/// own history (null until both are there).
const JUMP: &str = "(() => { const m = marks.filter((m) => m.kind === 'weights').pop(); if (!m) return null;
  const at = Math.floor(m.at); const a = steps.find((s) => s.iteration === at);
  const b = steps.find((s) => s.iteration === at + 1); return a && b ? b.style / a.style : null; })()";

fn text_of(selector: &str) -> String {
    format!("document.querySelector('{selector}').textContent")
}

#[allow(clippy::print_stderr)] // the skip note and the measured numbers
#[test]
#[ignore = "slow: headless Chromium over real VGG-16 runs; `.ci/run` runs it (--include-ignored)"]
fn the_page_runs_watches_steers_pauses_and_downloads_in_chromium() {
    let chromium = chromium_path();
    if !chromium.is_file() {
        assert!(!under_ci(), "CI=true but {} is missing (apt-get install chromium)", chromium.display());
        eprintln!("skipping the browser test: {} is missing (apt-get install chromium)", chromium.display());
        return;
    }
    let Some(weights) = real_weights() else { return };
    let start = Instant::now();
    let net = Vgg::load(&weights, Arch::Vgg16, Pooling::Max, None, "relu5_1").expect("the weights load");
    let server = TestServer::start_with_token(Arc::new(net), Limits::default());
    let token = server.token.clone().expect("a token");
    let mut b = Browser::launch(&chromium, 1280, 800).unwrap_or_else(|e| panic!("{e}"));
    let downloads = tempfile::tempdir().unwrap();
    b.allow_downloads(downloads.path());
    b.navigate(&server.url(&format!("/?token={token}")));
    b.wait(&format!("{}.startsWith('limits:')", text_of("#limits")), 30, "the page to load");
    // The styles came from /page.css under the policy: the start button wears the accent colour.
    let colour = b.eval("getComputedStyle(document.querySelector('#start')).backgroundColor").unwrap();
    assert_eq!(colour, "rgb(179, 71, 29)", "the page's styles did not load");

    // A file that only claims to be an image: the server refuses it and the page says why.
    let files = tempfile::tempdir().unwrap();
    let fake = files.path().join("holiday.png");
    std::fs::write(&fake, b"these are not pixels").unwrap();
    b.set_files("#content-file", &[fake]);
    b.set_files("#style-file", &[shared_image("starry_night.jpg")]);
    b.click("#start");
    let shown =
        b.wait(&format!("{}.includes('is not an image') && {0}", text_of("#error")), 30, "the refusal");
    assert_eq!(shown, "holiday.png is not an image impasto reads (PNG, JPEG, WebP, TIFF, GIF or BMP)");
    b.click("#clear-styles");

    // Two images, a small coarse-to-fine run (48 px, then 96 px).
    b.set_files("#content-file", &[shared_image("astronaut.png")]);
    b.set_files("#style-file", &[shared_image("starry_night.jpg")]);
    b.wait(
        "document.querySelectorAll('#content-thumbs img, #style-thumbs img').length === 2",
        10,
        "thumbnails",
    );
    b.eval("for (const [id, v] of [['#size', 96], ['#iterations', 150]]) { const e = document.querySelector(id); e.value = v; e.dispatchEvent(new Event('input')); }")
        .unwrap();
    b.click("#multiscale");
    b.click("#start");
    b.wait(&format!("{} === 'running'", text_of("#state")), 60, "the run to start");

    // At least two different preview frames.
    let mut frames = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while frames.len() < 2 {
        assert!(Instant::now() < deadline, "fewer than two different previews in 60 s: {frames:?}");
        if let Ok(serde_json::Value::String(f)) = b.eval(FRAME) {
            frames.insert(f);
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // The style weight ÷10 from the keyboard (the slider is log10, steps of 0.1): the server applies it
    // at the next iteration and the style loss drops by about 10.
    b.press("#style-weight", "ArrowLeft", 37, 10);
    b.wait(
        "Number(document.querySelector('#weights-in-force').dataset.style) < 10.1",
        30,
        "the new style weight",
    );
    let jump = b.wait(JUMP, 30, "a step under the new weight").as_f64().unwrap();
    eprintln!("style loss ×{jump:.3} at the step after the style weight went ×0.1");
    assert!((0.05..0.2).contains(&jump), "style loss ×{jump} after the style weight went ×0.1");
    assert!(b.eval(&text_of("#eta")).unwrap().as_str().unwrap().ends_with(" s"), "an ETA is shown");

    // The second scale, then pause: the iteration stands still and the download is a PNG that decodes.
    b.wait(&format!("{}.startsWith('2 / 2 (96×96)')", text_of("#scale")), 60, "the second scale");
    b.click("#pause");
    b.wait(&format!("{} === 'paused'", text_of("#state")), 30, "the pause");
    std::thread::sleep(Duration::from_millis(300));
    let at = b.eval(&text_of("#iteration")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(b.eval(&text_of("#iteration")).unwrap(), at, "a paused run moved on");
    b.wait(FRAME, 10, "the paused image");
    b.click("#download");
    let png = wait_for_download(downloads.path());
    let img = impasto::image::load_from_memory(&png).expect("the downloaded PNG decodes");
    assert_eq!((img.width(), img.height()), (96, 96));

    b.eval("window.scrollTo(0, 0)").unwrap();
    let shot = b.screenshot();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve.png");
    std::fs::write(&path, &shot).unwrap();
    eprintln!("screenshot: {} ({} bytes)", path.display(), shot.len());

    // A reloaded page finds its run again (the job is in the address) and shows where it stands.
    b.eval("location.reload()").unwrap();
    b.wait(
        &format!("{} === 'paused' && {} === {at}", text_of("#state"), text_of("#iteration")),
        30,
        "the reload",
    );
    b.wait(FRAME, 10, "the preview after the reload");

    b.click("#resume");
    b.wait(&format!("{} === 'running'", text_of("#state")), 30, "the resume");
    b.click("#cancel");
    b.wait(&format!("{} === 'cancelled'", text_of("#state")), 30, "the cancel");
    let errors = b.eval("document.querySelector('#error').classList.contains('shown')").unwrap();
    assert_eq!(errors, false, "the page shows an error; Chromium's log:\n{}", b.log());
    assert!(!b.log().contains("Content Security Policy"), "a CSP violation; Chromium's log:\n{}", b.log());
    assert_eq!(b.eval("location.search").unwrap(), "", "the token stayed in the address");
    eprintln!("browser test: {:.1} s, at {}", start.elapsed().as_secs_f64(), at);
}

/// The bytes of the first finished `.png` download in `dir`.
fn wait_for_download(dir: &std::path::Path) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "png"));
        if let Some(p) = done {
            return std::fs::read(p).expect("the download reads");
        }
        assert!(Instant::now() < deadline, "no PNG was downloaded into {}", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
