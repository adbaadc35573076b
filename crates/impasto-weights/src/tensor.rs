//! Tensors as this crate hands them out (shape + f32 values + the dtype they were stored as), the
//! storage element types PyTorch checkpoints use, and the gather that turns a strided view of raw
//! little-endian storage bytes into contiguous f32 values.

use std::collections::BTreeMap;

/// A state dict: tensor name (e.g. `features.0.weight`) → tensor, in key order.
pub type StateDict = BTreeMap<String, Tensor>;

/// One tensor of a checkpoint, made contiguous (row-major) and converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The dimensions, outermost first (PyTorch's `size()`).
    pub shape: Vec<usize>,
    /// The values, row-major; `data.len()` is the product of `shape`.
    pub data: Vec<f32>,
    /// The element type the checkpoint stored (f16/bf16/f64 and integers are converted to f32).
    pub dtype: DType,
}

impl Tensor {
    /// The number of elements, the product of the shape.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A storage element type of a PyTorch checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `torch.float32` (`FloatStorage`).
    F32,
    /// `torch.float64` (`DoubleStorage`).
    F64,
    /// `torch.float16` (`HalfStorage`).
    F16,
    /// `torch.bfloat16` (`BFloat16Storage`).
    BF16,
    /// `torch.int64` (`LongStorage`).
    I64,
    /// `torch.int32` (`IntStorage`).
    I32,
    /// `torch.int16` (`ShortStorage`).
    I16,
    /// `torch.int8` (`CharStorage`).
    I8,
    /// `torch.uint8` (`ByteStorage`).
    U8,
    /// `torch.bool` (`BoolStorage`).
    Bool,
}

impl DType {
    const ALL: [DType; 10] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U8,
        DType::Bool,
    ];

    /// The `torch.*Storage` class name of this type.
    pub fn storage_name(self) -> &'static str {
        match self {
            DType::F32 => "FloatStorage",
            DType::F64 => "DoubleStorage",
            DType::F16 => "HalfStorage",
            DType::BF16 => "BFloat16Storage",
            DType::I64 => "LongStorage",
            DType::I32 => "IntStorage",
            DType::I16 => "ShortStorage",
            DType::I8 => "CharStorage",
            DType::U8 => "ByteStorage",
            DType::Bool => "BoolStorage",
        }
    }

    /// The type named by a `torch.*Storage` class name.
    pub fn from_storage_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.storage_name() == name)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// Decodes one element from its bytes (`b.len() == self.size()`) in the given byte order.
    fn decode(self, b: &[u8], big_endian: bool) -> f32 {
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        if big_endian {
            a[..b.len()].reverse();
        }
        match self {
            DType::F32 => f32::from_le_bytes([a[0], a[1], a[2], a[3]]),
            DType::F64 => f64::from_le_bytes(a) as f32,
            DType::F16 => f16_to_f32(u16::from_le_bytes([a[0], a[1]])),
            DType::BF16 => f32::from_bits(u32::from(u16::from_le_bytes([a[0], a[1]])) << 16),
            DType::I64 => i64::from_le_bytes(a) as f32,
            DType::I32 => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f32,
            DType::I16 => f32::from(i16::from_le_bytes([a[0], a[1]])),
            DType::I8 => f32::from(a[0] as i8),
            DType::U8 => f32::from(a[0]),
            DType::Bool => f32::from(u8::from(a[0] != 0)),
        }
    }
}

/// IEEE 754 binary16 → binary32, exact (subnormals, infinities and NaN included).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m × 2^-24, exact in f32.
            let v = m as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Gathers the strided view (`offset`, `shape`, `stride`, all in elements) of `storage` (raw bytes of
/// `dtype`) into contiguous f32 values. Errors (as a reason text) when the view reaches past the
/// storage or the sizes overflow.
pub(crate) fn gather(
    storage: &[u8],
    dtype: DType,
    big_endian: bool,
    offset: u64,
    shape: &[usize],
    stride: &[usize],
) -> Result<Vec<f32>, String> {
    let es = dtype.size();
    let storage_numel = (storage.len() / es) as u64;
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("element count overflows")?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    let last = shape
        .iter()
        .zip(stride)
        .try_fold(offset, |a, (&d, &s)| (d as u64 - 1).checked_mul(s as u64).and_then(|x| x.checked_add(a)))
        .ok_or("offset and strides overflow")?;
    if last >= storage_numel {
        return Err(format!(
            "the view (offset {offset}, stride {stride:?}) reaches element {last} of a storage of {storage_numel}"
        ));
    }
    let el = |i: u64| {
        let i = i as usize * es;
        dtype.decode(&storage[i..i + es], big_endian)
    };
    let contiguous = {
        let mut expect = 1usize;
        let mut ok = true;
        for (&d, &s) in shape.iter().zip(stride).rev() {
            if d != 1 && s != expect {
                ok = false;
            }
            expect *= d;
        }
        ok
    };
    if contiguous {
        let start = offset as usize * es;
        if dtype == DType::F32 && !big_endian {
            return Ok(storage[start..start + numel * es]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect());
        }
        return Ok((0..numel as u64).map(|i| el(offset + i)).collect());
    }
    let mut out = Vec::with_capacity(numel);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..numel {
        let pos = idx.iter().zip(stride).fold(offset, |a, (&i, &s)| a + (i * s) as u64);
        out.push(el(pos));
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn gather_transposed_view() {
        let storage: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        // 2×3 storage viewed as its 3×2 transpose.
        let v = gather(&storage, DType::F32, false, 0, &[3, 2], &[1, 3]).unwrap();
        assert_eq!(v, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert!(gather(&storage, DType::F32, false, 1, &[3, 2], &[1, 3]).is_err());
    }
}
