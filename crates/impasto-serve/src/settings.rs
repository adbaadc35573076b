//! What a page may ask for: the server's [`Limits`], a run's [`Settings`] (checked against them and
//! turned into an [`impasto::StyleConfig`]), and new weights sent during a run.

use impasto::{Init, Optimizer, StyleConfig, StyleLoss, Weights};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, mib};

/// The server's limits. Every request beyond one is refused with a message saying which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Largest upload (all images of one run together), in bytes.
    pub max_upload_bytes: usize,
    /// Largest image accepted, in pixels (width × height), checked from the file's header.
    pub max_pixels: u64,
    /// Largest output size (longest side, pixels).
    pub max_size: u32,
    /// Most iterations one run may ask for.
    pub max_iterations: usize,
    /// Most style images in one run.
    pub max_styles: usize,
    /// Runs optimised at the same time; later ones wait in the queue.
    pub max_runs: usize,
    /// Runs that may wait in the queue; beyond that new runs are refused until one starts.
    pub max_queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_upload_bytes: 32 << 20,
            max_pixels: 25_000_000,
            max_size: 1024,
            max_iterations: 2000,
            max_styles: 8,
            max_runs: 1,
            max_queue: 8,
        }
    }
}

/// The optimiser a page may choose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerChoice {
    /// L-BFGS (the default).
    #[default]
    Lbfgs,
    /// Adam with the CLI's default step size.
    Adam,
}

/// Where a run starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitChoice {
    /// The content image (the default).
    #[default]
    Content,
    /// Seeded noise.
    Noise,
    /// Mid-grey with faint seeded noise.
    Gray,
    /// Seeded noise with the style images' colour statistics.
    #[serde(rename = "style-stats")]
    StyleStats,
    /// The first style image, cropped to the content's shape.
    Style,
}

/// How the style layers are compared with the style's (the CLI's `--style-loss`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StyleLossChoice {
    /// Gram matrices (the default).
    #[default]
    Gram,
    /// The Wasserstein-2 distance between the features' Gaussians.
    W2,
}

/// Adam's step size (the CLI's default).
const ADAM_LEARNING_RATE: f32 = 0.02;

/// A run's settings, the `settings` part of the upload form (JSON). Missing fields take the defaults of
/// [`Settings::defaults_for`] the server's limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Longest side of the output.
    pub size: u32,
    /// Iterations at the first scale (later scales of a multi-scale run get half as many, at least 50).
    pub iterations: usize,
    /// Weight of the content loss.
    pub content_weight: f32,
    /// Weight of the style loss (must be > 0: a run built without style terms cannot get them later).
    pub style_weight: f32,
    /// Weight of the total-variation loss.
    pub tv_weight: f32,
    /// Multi-scale: the first scale's longest side (`None`: the library's default, 512).
    pub min_size: Option<u32>,
    /// The optimiser.
    pub optimizer: OptimizerChoice,
    /// The starting image.
    pub init: InitChoice,
    /// How the style layers are compared with the style's.
    pub style_loss: StyleLossChoice,
}

impl Settings {
    /// The library's defaults, except a smaller size and fewer iterations so that a first try is quick
    /// (256 px and 200 iterations, or the limits when they are lower).
    pub fn defaults_for(limits: &Limits) -> Settings {
        let d = StyleConfig::default();
        Settings {
            size: limits.max_size.min(256),
            iterations: limits.max_iterations.min(200),
            content_weight: d.content_weight,
            style_weight: d.style_weight,
            tv_weight: d.tv_weight,
            min_size: None,
            optimizer: OptimizerChoice::Lbfgs,
            init: InitChoice::Content,
            style_loss: StyleLossChoice::Gram,
        }
    }

    /// Parses the form's `settings` text (a JSON object); fields it leaves out take the defaults.
    pub(crate) fn parse(text: &str, limits: &Limits) -> Result<Settings, ApiError> {
        let bad = |e: serde_json::Error| ApiError::bad_request(format!("invalid settings: {e}"));
        let serde_json::Value::Object(given) = serde_json::from_str(text).map_err(bad)? else {
            return Err(ApiError::bad_request("invalid settings: expected a JSON object"));
        };
        let mut merged = serde_json::to_value(Settings::defaults_for(limits)).map_err(bad)?;
        if let serde_json::Value::Object(m) = &mut merged {
            m.extend(given);
        }
        serde_json::from_value(merged).map_err(bad)
    }

    /// Checks the settings against `limits` and the library's own rules.
    pub(crate) fn check(&self, limits: &Limits, styles: usize) -> Result<StyleConfig, ApiError> {
        if self.size > limits.max_size {
            return Err(ApiError::bad_request(format!(
                "size {} is over this server's limit of {} pixels",
                self.size, limits.max_size
            )));
        }
        if self.iterations == 0 || self.iterations > limits.max_iterations {
            return Err(ApiError::bad_request(format!(
                "{} iterations: ask for 1 to {} (this server's limit)",
                self.iterations, limits.max_iterations
            )));
        }
        if styles > limits.max_styles {
            return Err(ApiError::bad_request(format!(
                "{styles} style images: this server takes at most {}",
                limits.max_styles
            )));
        }
        check_weights(self.weights())?;
        if self.style_weight == 0.0 {
            return Err(ApiError::bad_request("the style weight must be above 0"));
        }
        let config = self.config(0);
        config.validate(styles).map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(config)
    }

    /// The library configuration of these settings, running on `threads` threads.
    pub(crate) fn config(&self, threads: usize) -> StyleConfig {
        let d = StyleConfig::default();
        StyleConfig {
            size: self.size,
            iterations: self.iterations,
            content_weight: self.content_weight,
            style_weight: self.style_weight,
            tv_weight: self.tv_weight,
            min_size: self.min_size.unwrap_or(d.min_size),
            optimizer: match self.optimizer {
                OptimizerChoice::Lbfgs => d.optimizer,
                OptimizerChoice::Adam => Optimizer::Adam { learning_rate: ADAM_LEARNING_RATE },
            },
            init: match self.init {
                InitChoice::Content => Init::Content,
                InitChoice::Noise => Init::Noise,
                InitChoice::Gray => Init::Gray,
                InitChoice::StyleStats => Init::StyleStats,
                InitChoice::Style => Init::Style,
            },
            style_loss: match self.style_loss {
                StyleLossChoice::Gram => StyleLoss::Gram,
                StyleLossChoice::W2 => StyleLoss::Wasserstein,
            },
            threads,
            ..d
        }
    }

    /// The weights the run starts with.
    pub(crate) fn weights(&self) -> Weights {
        Weights { content: self.content_weight, style: self.style_weight, tv: self.tv_weight }
    }
}

/// New weights for a running job, as the page sends them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WeightsJson {
    pub(crate) content: f32,
    pub(crate) style: f32,
    pub(crate) tv: f32,
}

impl From<WeightsJson> for Weights {
    fn from(w: WeightsJson) -> Weights {
        Weights { content: w.content, style: w.style, tv: w.tv }
    }
}

impl From<Weights> for WeightsJson {
    fn from(w: Weights) -> WeightsJson {
        WeightsJson { content: w.content, style: w.style, tv: w.tv }
    }
}

/// Weights must be finite and ≥ 0, and below 1e12 (beyond that the losses overflow f32 gradients).
pub(crate) fn check_weights(w: Weights) -> Result<(), ApiError> {
    for (what, v) in [("content", w.content), ("style", w.style), ("TV", w.tv)] {
        if !v.is_finite() || !(0.0..=1e12).contains(&v) {
            return Err(ApiError::bad_request(format!(
                "{what} weight {v}: it must be a number from 0 to 1e12"
            )));
        }
    }
    Ok(())
}

/// One line describing the limits (for the page).
pub(crate) fn describe(limits: &Limits) -> String {
    format!(
        "uploads up to {}, images up to {}, outputs up to {} px, {} iterations, {} styles",
        mib(limits.max_upload_bytes as u64),
        crate::upload::pixel_count(limits.max_pixels),
        limits.max_size,
        limits.max_iterations,
        limits.max_styles
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_fill_in_defaults_and_refuse_unknown_fields() {
        let limits = Limits::default();
        let s = Settings::parse(r#"{"size": 64}"#, &limits).unwrap();
        assert_eq!((s.size, s.iterations, s.style_weight), (64, 200, 100.0));
        let low = Limits { max_iterations: 50, max_size: 128, ..limits };
        let s = Settings::parse("{}", &low).unwrap();
        assert_eq!((s.size, s.iterations), (128, 50));
        let e = Settings::parse(r#"{"sizee": 64}"#, &limits).unwrap_err();
        assert!(e.message.contains("unknown field `sizee`"), "{}", e.message);
        assert_eq!(
            Settings::parse("[1]", &limits).unwrap_err().message,
            "invalid settings: expected a JSON object"
        );
        for (word, init) in [
            ("content", Init::Content),
            ("noise", Init::Noise),
            ("gray", Init::Gray),
            ("style-stats", Init::StyleStats),
            ("style", Init::Style),
        ] {
            let s = Settings::parse(&format!(r#"{{"init": "{word}"}}"#), &limits).unwrap();
            assert_eq!(s.config(1).init, init, "{word}");
        }
        for (word, loss) in [("gram", StyleLoss::Gram), ("w2", StyleLoss::Wasserstein)] {
            let s = Settings::parse(&format!(r#"{{"style_loss": "{word}"}}"#), &limits).unwrap();
            assert_eq!(s.config(1).style_loss, loss, "{word}");
        }
        let e = Settings::parse(r#"{"style_loss": "w1"}"#, &limits).unwrap_err();
        assert!(e.message.contains("unknown variant `w1`"), "{}", e.message);
    }

    #[test]
    fn settings_are_checked_against_the_limits() {
        let limits = Limits::default();
        let ok = Settings { size: 64, ..Settings::defaults_for(&limits) };
        assert!(ok.check(&limits, 1).is_ok());
        let msg = |s: Settings, n| s.check(&limits, n).unwrap_err().message;
        assert!(msg(Settings { size: 5000, ..ok.clone() }, 1).contains("limit of 1024"));
        assert!(msg(Settings { iterations: 0, ..ok.clone() }, 1).contains("1 to 2000"));
        assert!(msg(ok.clone(), 9).contains("at most 8"));
        assert!(msg(Settings { tv_weight: f32::INFINITY, ..ok.clone() }, 1).contains("TV weight inf"));
        assert!(msg(Settings { style_weight: 0.0, ..ok.clone() }, 1).contains("above 0"));
        assert!(msg(Settings { size: 8, ..ok }, 1).contains("at least 16"));
    }
}
