//! Dense f32 matrix products through the `gemm` crate (cache-blocked, with AVX2/AVX-512/NEON
//! micro-kernels chosen at run time). Quantized weights go through [`crate::matmul`]; this is the path
//! for unquantized ones (an encoder's F32 safetensors) and for attention's Q·Kᵀ and P·V blocks.
//!
//! All matrices are row-major slices with an explicit row stride, so a head's columns inside a wider
//! (tokens, heads·hd) buffer can be used in place.

use gemm::Parallelism;

use crate::TensorError;

/// A read-only row-major view: `rows` × `cols`, row `r` starting at `data[r * stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl<'a> View<'a> {
    /// A dense `rows` × `cols` matrix.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View { data, rows, cols, stride: cols }
    }

    fn check(&self, what: &'static str) -> Result<(), TensorError> {
        let need = if self.rows == 0 || self.cols == 0 { 0 } else { (self.rows - 1) * self.stride + self.cols };
        if self.cols > self.stride && self.rows > 1 || self.data.len() < need {
            return Err(TensorError::Length { what, unit: "floats", expected: need, got: self.data.len() });
        }
        Ok(())
    }
}

/// How a product is split over threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// On the calling thread (the caller already runs many products in parallel).
    One,
    /// Over the current rayon pool.
    Pool,
}

/// `y = x · wᵀ` (+ `bias` on every row): x (n, k), w (m, k) as a linear layer stores it, y (n, m) dense.
pub fn linear(x: View, w: View, bias: Option<&[f32]>, y: &mut [f32], threads: Threads) -> Result<(), TensorError> {
    if w.cols != x.cols {
        return Err(TensorError::Length { what: "gemm inner dimension", unit: "columns", expected: x.cols, got: w.cols });
    }
    if let Some(b) = bias
        && b.len() != w.rows
    {
        return Err(TensorError::Length { what: "bias", unit: "floats", expected: w.rows, got: b.len() });
    }
    if x.rows <= SMALL_N {
        return small_linear(x, w, bias, y, threads);
    }
    // wᵀ as a (k, m) matrix: element (kk, j) = w[j·stride + kk].
    product(x, Side { data: w.data, rows: w.cols, cols: w.rows, row_step: 1, col_step: w.stride }, y, w.rows, threads, "linear")?;
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(w.rows) {
            row.iter_mut().zip(b).for_each(|(v, &bb)| *v += bb);
        }
    }
    Ok(())
}

/// Up to this many input rows, [`linear`] takes dot products of contiguous rows instead of a packed GEMM
/// (which spends most of its time packing and synchronizing for a query of a few tokens).
const SMALL_N: usize = 16;

fn small_linear(x: View, w: View, bias: Option<&[f32]>, y: &mut [f32], threads: Threads) -> Result<(), TensorError> {
    use rayon::prelude::*;
    x.check("gemm left operand")?;
    w.check("gemm right operand")?;
    let (n, m, k) = (x.rows, w.rows, x.cols);
    if y.len() < n * m {
        return Err(TensorError::Length { what: "gemm output", unit: "floats", expected: n * m, got: y.len() });
    }
    let out = |j: usize, col: &mut dyn FnMut(usize, f32)| {
        let wr = &w.data[j * w.stride..][..k];
        for t in 0..n {
            col(t, crate::vmath::dot(&x.data[t * x.stride..][..k], wr) + bias.map_or(0.0, |b| b[j]));
        }
    };
    // Columns in parallel: each task owns a block of output columns j and writes y[t·m + j] for all t.
    let block = 64;
    let mut cols: Vec<f32> = vec![0.0; n * m];
    let fill = |(bi, chunk): (usize, &mut [f32])| {
        for (jj, c) in chunk.chunks_mut(n).enumerate() {
            out(bi * block + jj, &mut |t, v| c[t] = v);
        }
    };
    match threads {
        Threads::One => cols.chunks_mut(block * n).enumerate().for_each(fill),
        Threads::Pool => cols.par_chunks_mut(block * n).enumerate().for_each(fill),
    }
    for j in 0..m {
        for t in 0..n {
            y[t * m + j] = cols[j * n + t];
        }
    }
    Ok(())
}

/// `y = a · bᵀ`: a (n, k), b (m, k), y (n, m) with row stride `y_stride` — attention scores Q·Kᵀ.
pub fn a_bt(a: View, b: View, y: &mut [f32], y_stride: usize, threads: Threads) -> Result<(), TensorError> {
    if a.cols != b.cols {
        return Err(TensorError::Length { what: "gemm inner dimension", unit: "columns", expected: a.cols, got: b.cols });
    }
    product(a, Side { data: b.data, rows: b.cols, cols: b.rows, row_step: 1, col_step: b.stride }, y, y_stride, threads, "a·bᵀ")
}

/// `y = a · b`: a (n, k), b (k, m), y (n, m) with row stride `y_stride` — attention output P·V.
pub fn a_b(a: View, b: View, y: &mut [f32], y_stride: usize, threads: Threads) -> Result<(), TensorError> {
    if a.cols != b.rows {
        return Err(TensorError::Length { what: "gemm inner dimension", unit: "rows", expected: a.cols, got: b.rows });
    }
    b.check("gemm right operand")?;
    product(a, Side { data: b.data, rows: b.rows, cols: b.cols, row_step: b.stride, col_step: 1 }, y, y_stride, threads, "a·b")
}

/// The right operand as (rows = k, cols = m) with arbitrary element steps.
struct Side<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_step: usize,
    col_step: usize,
}

fn product(a: View, b: Side, y: &mut [f32], y_stride: usize, threads: Threads, what: &'static str) -> Result<(), TensorError> {
    a.check("gemm left operand")?;
    let (n, k, m) = (a.rows, a.cols, b.cols);
    let b_need = if k == 0 || m == 0 { 0 } else { (k - 1) * b.row_step + (m - 1) * b.col_step + 1 };
    if b.data.len() < b_need || b.rows != k {
        return Err(TensorError::Length { what, unit: "floats", expected: b_need, got: b.data.len() });
    }
    let y_need = if n == 0 || m == 0 { 0 } else { (n - 1) * y_stride + m };
    if y.len() < y_need || (m > y_stride && n > 1) {
        return Err(TensorError::Length { what: "gemm output", unit: "floats", expected: y_need, got: y.len() });
    }
    if n == 0 || m == 0 {
        return Ok(());
    }
    if k == 0 {
        for row in y.chunks_mut(y_stride).take(n) {
            row[..m].fill(0.0);
        }
        return Ok(());
    }
    let parallelism = match threads {
        Threads::One => Parallelism::None,
        Threads::Pool => match rayon::current_num_threads() {
            0 | 1 => Parallelism::None,
            t => Parallelism::Rayon(t),
        },
    };
    // SAFETY: the checks above keep every index the strides reach inside its slice: a's last element is
    // (n-1)·stride + k-1 < len, b's is (k-1)·row_step + (m-1)·col_step < len, y's (n-1)·y_stride + m-1
    // < len; y is borrowed mutably, so it cannot alias a or b. With read_dst = false, y = 1·(a·b).
    unsafe {
        gemm::gemm(
            n,
            m,
            k,
            y.as_mut_ptr(),
            1,
            y_stride as isize,
            false,
            a.data.as_ptr(),
            1,
            a.stride as isize,
            b.data.as_ptr(),
            b.col_step as isize,
            b.row_step as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    /// f64 reference of y[i][j] = Σ a[i][kk] · b(kk, j).
    fn naive(n: usize, k: usize, m: usize, a: impl Fn(usize, usize) -> f32, b: impl Fn(usize, usize) -> f32) -> Vec<f32> {
        let mut y = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                y[i * m + j] = (0..k).map(|kk| a(i, kk) as f64 * b(kk, j) as f64).sum::<f64>() as f32;
            }
        }
        y
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "element {i}: {x} vs {y}");
        }
    }

    #[test]
    fn linear_matches_naive_with_bias_and_threads() {
        for (n, k, m) in [(37, 70, 29), (3, 70, 130), (1, 5, 2), (16, 33, 65)] {
            linear_case(n, k, m);
        }
    }

    fn linear_case(n: usize, k: usize, m: usize) {
        let (x, w, b) = (seq(n * k, 1), seq(m * k, 2), seq(m, 3));
        let mut want = naive(n, k, m, |i, kk| x[i * k + kk], |kk, j| w[j * k + kk]);
        want.chunks_exact_mut(m).for_each(|r| r.iter_mut().zip(&b).for_each(|(v, bb)| *v += bb));
        for threads in [Threads::One, Threads::Pool] {
            let mut y = vec![f32::NAN; n * m];
            linear(View::dense(&x, n, k), View::dense(&w, m, k), Some(&b), &mut y, threads).unwrap();
            close(&y, &want);
        }
    }

    #[test]
    fn strided_head_views() {
        // Two heads of width 8 inside rows of 16: head 1 of q against head 1 of k, then P·V into head 1 of out.
        let (n, hd, width) = (5, 8, 16);
        let (q, kk, v) = (seq(n * width, 4), seq(n * width, 5), seq(n * width, 6));
        let mut s = vec![0.0; n * n];
        a_bt(
            View { data: &q[hd..], rows: n, cols: hd, stride: width },
            View { data: &kk[hd..], rows: n, cols: hd, stride: width },
            &mut s,
            n,
            Threads::One,
        )
        .unwrap();
        close(&s, &naive(n, hd, n, |i, c| q[i * width + hd + c], |c, j| kk[j * width + hd + c]));
        let mut out = vec![7.0; n * width];
        a_b(View::dense(&s, n, n), View { data: &v[hd..], rows: n, cols: hd, stride: width }, &mut out[hd..], width, Threads::One).unwrap();
        let want = naive(n, n, hd, |i, c| s[i * n + c], |c, j| v[c * width + hd + j]);
        for i in 0..n {
            close(&out[i * width + hd..i * width + width], &want[i * hd..(i + 1) * hd]);
            assert!(out[i * width..i * width + hd].iter().all(|&e| e == 7.0), "head 0 of row {i} was written");
        }
    }

    #[test]
    fn shape_errors() {
        let x = vec![0.0; 6];
        let mut y = vec![0.0; 4];
        assert!(linear(View::dense(&x, 2, 3), View::dense(&x, 3, 2), None, &mut y, Threads::One).is_err());
        assert!(linear(View::dense(&x, 2, 3), View::dense(&x, 2, 3), Some(&[0.0]), &mut y, Threads::One).is_err());
        assert!(linear(View::dense(&x, 3, 3), View::dense(&x, 2, 3), None, &mut y, Threads::One).is_err(), "x too short");
        assert!(linear(View::dense(&x, 2, 3), View::dense(&x, 2, 3), None, &mut y[..3], Threads::One).is_err(), "y too short");
    }
}
