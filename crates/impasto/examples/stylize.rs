//! Minimal library example: `cargo run --release -p impasto --example stylize -- WEIGHTS CONTENT STYLE OUT [SIZE] [ITERATIONS] [TV_WEIGHT] [STYLE_WEIGHT]`.

use std::ops::ControlFlow;

use impasto::{Arch, Observer, Pooling, Step, StyleConfig, Vgg};

struct Print;

impl Observer for Print {
    #[allow(clippy::print_stderr)]
    fn on_step(&mut self, s: &Step<'_>) -> ControlFlow<()> {
        if s.iteration.is_multiple_of(10) || s.iteration == s.iterations {
            let l = s.losses;
            eprintln!(
                "iter {:>4}/{}  content {:.3e}  style {:.3e}  tv {:.3e}  {:.2} s/it",
                s.iteration,
                s.iterations,
                l.content,
                l.style,
                l.tv,
                s.elapsed.as_secs_f64() / s.iteration as f64
            );
        }
        ControlFlow::Continue(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights, content, style, out, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: stylize WEIGHTS CONTENT STYLE OUT [SIZE] [ITERATIONS] [TV_WEIGHT] [STYLE_WEIGHT]".into(),
        );
    };
    let mut config = StyleConfig::default();
    if let Some(s) = rest.first() {
        config.size = s.parse()?;
    }
    if let Some(s) = rest.get(1) {
        config.iterations = s.parse()?;
    }
    if let Some(s) = rest.get(2) {
        config.tv_weight = s.parse()?;
    }
    if let Some(s) = rest.get(3) {
        config.style_weight = s.parse()?;
    }
    let net = Vgg::load(weights.as_ref(), Arch::Vgg16, Pooling::Max, None, "relu5_1")?;
    let content = impasto::load_image(content.as_ref())?;
    let style = impasto::load_image(style.as_ref())?;
    let result = impasto::stylize(&net, &config, &content, &[style], &mut Print)?;
    impasto::save_image(&result.image, out.as_ref())?;
    Ok(())
}
