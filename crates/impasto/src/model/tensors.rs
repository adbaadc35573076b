//! The convolution weights a network is built from (OIHW f32 weight and bias per layer), and reading
//! one checked tensor out of a safetensors file: the primitives that the f32 and compact readers share.

use std::path::Path;

use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use super::arch::Arch;
use crate::error::{Error, Result};

/// The conv weights of one layer as read from a file: OIHW weight and bias.
#[derive(Debug, Clone)]
pub(crate) struct ConvWeights {
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

/// The tensor `key` of `st`, checked to have `shape` and `dtype` (`layer` is the layer that needs it).
pub(crate) fn tensor<'a>(
    st: &'a SafeTensors<'a>,
    path: &Path,
    key: &str,
    layer: &str,
    arch: Arch,
    shape: &[usize],
    dtype: Dtype,
) -> Result<TensorView<'a>> {
    let view = st.tensor(key).map_err(|_| Error::WeightsMissingKey {
        path: path.into(),
        key: key.into(),
        layer: layer.into(),
        model: arch.name().into(),
    })?;
    if view.shape() != shape || view.dtype() != dtype {
        return Err(Error::WeightsShape {
            path: path.into(),
            key: key.into(),
            layer: layer.into(),
            expected: shape.to_vec(),
            actual: view.shape().to_vec(),
            dtype: format!("{:?}", view.dtype()),
            expected_dtype: format!("{dtype:?}"),
        });
    }
    Ok(view)
}

/// Little-endian f32 values.
pub(crate) fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}
