//! Which layers a run needs from the network: the deepest one (the network is loaded, or cut, after
//! it), and the default style layers of a network that stops early (the built-in compact VGG-16).

use crate::error::{Error, Result};
use crate::{Arch, StyleConfig};

/// The deepest of the content and style layers of `config`, by position in its model (the network
/// is loaded up to it).
pub fn deepest_layer(config: &StyleConfig) -> Result<String> {
    let mut deepest: Option<(usize, &str)> = None;
    for name in config.content_layers.iter().chain(&config.style_layers) {
        let i = config.model.layer_index(name)?;
        if deepest.is_none_or(|(d, _)| i > d) {
            deepest = Some((i, name));
        }
    }
    match deepest {
        Some((_, name)) => Ok(name.to_string()),
        None => Err(Error::Config { what: "layers", reason: "no content and no style layers".into() }),
    }
}

/// The default style layers ([`StyleConfig::default`]'s) that a network of `arch` cut after layer
/// `last` has: all of them for a full network, `relu1_1` … `relu4_1` for the built-in compact VGG-16
/// ([`COMPACT_STYLE_LAYERS`](crate::COMPACT_STYLE_LAYERS)). A run that did not choose its style layers
/// uses these; one that did keeps its own, and a layer the network lacks is an error at the run.
pub fn default_style_layers(arch: Arch, last: &str) -> Result<Vec<String>> {
    let end = arch.layer_index(last)?;
    let mut layers = Vec::new();
    for name in StyleConfig::default().style_layers {
        if arch.layer_index(&name)? <= end {
            layers.push(name);
        }
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{COMPACT_LAST_LAYER, COMPACT_STYLE_LAYERS};

    #[test]
    fn deepest_layer_is_by_position_not_name() {
        let config = StyleConfig {
            content_layers: vec!["conv5_1".into()],
            style_layers: vec!["relu1_1".into(), "pool4".into()],
            ..StyleConfig::default()
        };
        assert_eq!(deepest_layer(&config).unwrap(), "conv5_1");
        assert_eq!(deepest_layer(&StyleConfig::default()).unwrap(), "relu5_1");
        let none = StyleConfig { content_layers: vec![], style_layers: vec![], ..StyleConfig::default() };
        assert_eq!(
            deepest_layer(&none).unwrap_err().to_string(),
            "invalid layers: no content and no style layers"
        );
        let bad = StyleConfig { style_layers: vec!["relu9_9".into()], ..StyleConfig::default() };
        assert!(deepest_layer(&bad).unwrap_err().to_string().starts_with("unknown layer `relu9_9`"));
    }

    #[test]
    fn the_compact_model_gets_the_default_style_layers_it_has() {
        assert_eq!(default_style_layers(Arch::Vgg16, COMPACT_LAST_LAYER).unwrap(), COMPACT_STYLE_LAYERS);
        assert_eq!(
            default_style_layers(Arch::Vgg16, "relu5_1").unwrap(),
            StyleConfig::default().style_layers
        );
        assert_eq!(default_style_layers(Arch::Vgg19, "pool5").unwrap(), StyleConfig::default().style_layers);
        assert_eq!(default_style_layers(Arch::Vgg16, "conv2_1").unwrap(), ["relu1_1"]);
        assert!(default_style_layers(Arch::Vgg16, "relu9_9").is_err());
    }
}
