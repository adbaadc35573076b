//! Naive reference twins of every kernel: direct loops, f64 accumulation.
//!
//! These are the ground truth for tests (here and in other crates). They are
//! generic over [`Real`] (`f32` or `f64`), so finite-difference checks can run
//! entirely in f64. Semantics (layouts, tie rules, overwrite vs accumulate)
//! match the fast kernels exactly; length checks are `assert!`s as well.
//! Speed is not a goal.

use std::fmt::Debug;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A float the naive kernels run on: `f32` or `f64` (sealed).
pub trait Real: Copy + Debug + PartialOrd + Send + Sync + sealed::Sealed + 'static {
    /// Widen to f64.
    fn to_f64(self) -> f64;
    /// Round from f64.
    fn from_f64(v: f64) -> Self;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// Naive [`crate::sgemm`]: `C = (accumulate ? C : 0) + alpha·A·B`, row-major
/// with row strides `lda`, `ldb`, `ldc`.
pub fn sgemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    lda: usize,
    b: &[T],
    ldb: usize,
    accumulate: bool,
    c: &mut [T],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                s += a[i * lda + p].to_f64() * b[p * ldb + j].to_f64();
            }
            let s = alpha.to_f64() * s;
            let dst = &mut c[i * ldc + j];
            *dst = T::from_f64(if accumulate { dst.to_f64() + s } else { s });
        }
    }
}

/// Naive [`crate::Conv3x3::forward`]: `weight` OIHW (`c_out·c_in·9`), `bias`
/// (`c_out`), `x` (`c_in·h·w`), `y` (`c_out·h·w`, overwritten), optional ReLU.
pub fn conv3x3_forward<T: Real>(
    x: &[T],
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    weight: &[T],
    bias: &[T],
    relu: bool,
    y: &mut [T],
) {
    assert_eq!(x.len(), c_in * h * w, "naive conv forward: x length");
    assert_eq!(y.len(), c_out * h * w, "naive conv forward: y length");
    assert_eq!(weight.len(), c_out * c_in * 9, "naive conv forward: weight length");
    assert_eq!(bias.len(), c_out, "naive conv forward: bias length");
    for o in 0..c_out {
        for i in 0..h {
            for j in 0..w {
                let mut s = bias[o].to_f64();
                for c in 0..c_in {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (ii, jj) = (i + ky, j + kx);
                            if ii == 0 || jj == 0 || ii > h || jj > w {
                                continue;
                            }
                            let xv = x[(c * h + ii - 1) * w + jj - 1].to_f64();
                            s += weight[((o * c_in + c) * 3 + ky) * 3 + kx].to_f64() * xv;
                        }
                    }
                }
                if relu && s < 0.0 {
                    s = 0.0;
                }
                y[(o * h + i) * w + j] = T::from_f64(s);
            }
        }
    }
}

/// Naive [`crate::Conv3x3::backward_input`], written as the direct transpose
/// (scatter) of the forward sum: `dx[c, i+ky−1, j+kx−1] += w[o,c,ky,kx]·dy[o,i,j]`.
pub fn conv3x3_backward_input<T: Real>(
    dy: &[T],
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    weight: &[T],
    dx: &mut [T],
) {
    assert_eq!(dy.len(), c_out * h * w, "naive conv backward: dy length");
    assert_eq!(dx.len(), c_in * h * w, "naive conv backward: dx length");
    assert_eq!(weight.len(), c_out * c_in * 9, "naive conv backward: weight length");
    let mut acc = vec![0.0f64; c_in * h * w];
    for o in 0..c_out {
        for i in 0..h {
            for j in 0..w {
                let g = dy[(o * h + i) * w + j].to_f64();
                for c in 0..c_in {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (ii, jj) = (i + ky, j + kx);
                            if ii == 0 || jj == 0 || ii > h || jj > w {
                                continue;
                            }
                            acc[(c * h + ii - 1) * w + jj - 1] +=
                                weight[((o * c_in + c) * 3 + ky) * 3 + kx].to_f64() * g;
                        }
                    }
                }
            }
        }
    }
    for (d, a) in dx.iter_mut().zip(acc) {
        *d = T::from_f64(a);
    }
}

/// Naive [`crate::relu_inplace`] (NaN is kept).
pub fn relu_inplace<T: Real>(x: &mut [T]) {
    for v in x {
        if v.to_f64() < 0.0 {
            *v = T::from_f64(0.0);
        }
    }
}

/// Naive [`crate::relu_backward_inplace`].
pub fn relu_backward_inplace<T: Real>(dy: &mut [T], act: &[T]) {
    assert_eq!(dy.len(), act.len(), "naive relu backward: lengths differ");
    for (d, a) in dy.iter_mut().zip(act) {
        if a.to_f64() <= 0.0 || a.to_f64().is_nan() {
            *d = T::from_f64(0.0);
        }
    }
}

/// Row-major window index (0..4) of the max: first max under strict `>`,
/// a NaN always takes over (PyTorch's rule).
fn window_argmax<T: Real>(x: &[T], w: usize, c_off: usize, oi: usize, oj: usize) -> (usize, usize) {
    let mut best = (2 * oi, 2 * oj);
    for (di, dj) in [(0, 1), (1, 0), (1, 1)] {
        let (i, j) = (2 * oi + di, 2 * oj + dj);
        let v = x[c_off + i * w + j].to_f64();
        let bv = x[c_off + best.0 * w + best.1].to_f64();
        if v > bv || v.is_nan() {
            best = (i, j);
        }
    }
    best
}

/// Naive [`crate::max_pool2x2_forward`].
pub fn max_pool2x2_forward<T: Real>(x: &[T], c: usize, h: usize, w: usize, y: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(x.len(), c * h * w, "naive max pool: x length");
    assert_eq!(y.len(), c * oh * ow, "naive max pool: y length");
    for ch in 0..c {
        for oi in 0..oh {
            for oj in 0..ow {
                let (i, j) = window_argmax(x, w, ch * h * w, oi, oj);
                y[(ch * oh + oi) * ow + oj] = x[(ch * h + i) * w + j];
            }
        }
    }
}

/// Naive [`crate::max_pool2x2_backward`].
pub fn max_pool2x2_backward<T: Real>(x: &[T], c: usize, h: usize, w: usize, dy: &[T], dx: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(x.len(), c * h * w, "naive max pool backward: x length");
    assert_eq!(dy.len(), c * oh * ow, "naive max pool backward: dy length");
    assert_eq!(dx.len(), c * h * w, "naive max pool backward: dx length");
    dx.fill(T::from_f64(0.0));
    for ch in 0..c {
        for oi in 0..oh {
            for oj in 0..ow {
                let (i, j) = window_argmax(x, w, ch * h * w, oi, oj);
                dx[(ch * h + i) * w + j] = dy[(ch * oh + oi) * ow + oj];
            }
        }
    }
}

/// Naive [`crate::max_pool2x2_backward_argmax`] (with the forward it replaces): the max-pool
/// backward of the ReLU output `x`, then the ReLU backward (`x > 0`), composed from the twins above.
pub fn relu_max_pool2x2_backward<T: Real>(x: &[T], c: usize, h: usize, w: usize, dy: &[T], dx: &mut [T]) {
    max_pool2x2_backward(x, c, h, w, dy, dx);
    relu_backward_inplace(dx, x);
}

/// Naive [`crate::avg_pool2x2_forward`].
pub fn avg_pool2x2_forward<T: Real>(x: &[T], c: usize, h: usize, w: usize, y: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(x.len(), c * h * w, "naive avg pool: x length");
    assert_eq!(y.len(), c * oh * ow, "naive avg pool: y length");
    for ch in 0..c {
        for oi in 0..oh {
            for oj in 0..ow {
                let mut s = 0.0f64;
                for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    s += x[(ch * h + 2 * oi + di) * w + 2 * oj + dj].to_f64();
                }
                y[(ch * oh + oi) * ow + oj] = T::from_f64(s / 4.0);
            }
        }
    }
}

/// Naive [`crate::avg_pool2x2_backward`].
pub fn avg_pool2x2_backward<T: Real>(c: usize, h: usize, w: usize, dy: &[T], dx: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(dy.len(), c * oh * ow, "naive avg pool backward: dy length");
    assert_eq!(dx.len(), c * h * w, "naive avg pool backward: dx length");
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                let (oi, oj) = (i / 2, j / 2);
                let v = if oi < oh && oj < ow { dy[(ch * oh + oi) * ow + oj].to_f64() / 4.0 } else { 0.0 };
                dx[(ch * h + i) * w + j] = T::from_f64(v);
            }
        }
    }
}

/// Naive [`crate::l2_pool2x2_forward`].
pub fn l2_pool2x2_forward<T: Real>(x: &[T], c: usize, h: usize, w: usize, y: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(x.len(), c * h * w, "naive l2 pool: x length");
    assert_eq!(y.len(), c * oh * ow, "naive l2 pool: y length");
    for ch in 0..c {
        for oi in 0..oh {
            for oj in 0..ow {
                let s = l2_window(x, (ch, oi, oj), (h, w)).iter().map(|v| v * v).sum::<f64>();
                y[(ch * oh + oi) * ow + oj] = T::from_f64((s / 4.0).sqrt());
            }
        }
    }
}

/// Naive [`crate::l2_pool2x2_backward`]: `dx = dy · x / (4·y)`, 0 where `y` is 0.
pub fn l2_pool2x2_backward<T: Real>(x: &[T], c: usize, h: usize, w: usize, dy: &[T], dx: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(x.len(), c * h * w, "naive l2 pool backward: x length");
    assert_eq!(dy.len(), c * oh * ow, "naive l2 pool backward: dy length");
    assert_eq!(dx.len(), c * h * w, "naive l2 pool backward: dx length");
    for ch in 0..c {
        for i in 0..h {
            for j in 0..w {
                let (oi, oj) = (i / 2, j / 2);
                let mut v = 0.0;
                if oi < oh && oj < ow {
                    let y =
                        (l2_window(x, (ch, oi, oj), (h, w)).iter().map(|v| v * v).sum::<f64>() / 4.0).sqrt();
                    if y > 0.0 {
                        v = dy[(ch * oh + oi) * ow + oj].to_f64() * x[(ch * h + i) * w + j].to_f64()
                            / (4.0 * y);
                    }
                }
                dx[(ch * h + i) * w + j] = T::from_f64(v);
            }
        }
    }
}

/// The four values of window (`oi`, `oj`) of channel `ch`, in f64.
fn l2_window<T: Real>(x: &[T], (ch, oi, oj): (usize, usize, usize), (h, w): (usize, usize)) -> [f64; 4] {
    [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(di, dj)| x[(ch * h + 2 * oi + di) * w + 2 * oj + dj].to_f64())
}

/// Naive [`crate::gram`]: `g = scale·F·Fᵀ`, `F` is `c×n`.
pub fn gram<T: Real>(f: &[T], c: usize, n: usize, scale: T, g: &mut [T]) {
    assert_eq!(f.len(), c * n, "naive gram: f length");
    assert_eq!(g.len(), c * c, "naive gram: g length");
    for i in 0..c {
        for j in 0..c {
            let mut s = 0.0f64;
            for p in 0..n {
                s += f[i * n + p].to_f64() * f[j * n + p].to_f64();
            }
            g[i * c + j] = T::from_f64(scale.to_f64() * s);
        }
    }
}

/// Naive [`crate::gram_backward`]: `df (+)= scale·(dG + dGᵀ)·F`.
pub fn gram_backward<T: Real>(
    f: &[T],
    c: usize,
    n: usize,
    dg: &[T],
    scale: T,
    accumulate: bool,
    df: &mut [T],
) {
    assert_eq!(f.len(), c * n, "naive gram backward: f length");
    assert_eq!(dg.len(), c * c, "naive gram backward: dg length");
    assert_eq!(df.len(), c * n, "naive gram backward: df length");
    for i in 0..c {
        for p in 0..n {
            let mut s = 0.0f64;
            for j in 0..c {
                let d = dg[i * c + j].to_f64() + dg[j * c + i].to_f64();
                s += d * f[j * n + p].to_f64();
            }
            let s = scale.to_f64() * s;
            let dst = &mut df[i * n + p];
            *dst = T::from_f64(if accumulate { dst.to_f64() + s } else { s });
        }
    }
}
