//! Dense f32 operations of a transformer forward pass. Where llama.cpp's arithmetic is observable in the
//! output (RoPE angles built by repeated multiplication, GELU through an f16 table) we follow it, because
//! Ferrite is tested token for token against llama.cpp.

use std::sync::OnceLock;

use half::f16;

/// RMS normalisation of each `dim`-sized row of `x` in place: x ← x / sqrt(mean(x²) + eps) · w.
/// As ggml: each square rounded to f32, summed in f64.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    let dim = w.len();
    debug_assert_eq!(x.len() % dim, 0);
    for row in x.chunks_exact_mut(dim) {
        let ss: f64 = row.iter().map(|&v| (v * v) as f64).sum();
        let scale = 1.0 / ((ss / dim as f64) as f32 + eps).sqrt();
        for (v, &g) in row.iter_mut().zip(w) {
            *v = *v * scale * g;
        }
    }
}

/// Layer normalisation of each `dim`-sized row of `x` in place: x ← (x − mean) / sqrt(var + eps) · w + b
/// (BERT's post-norm). Mean and variance are accumulated in f64.
pub fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let dim = w.len();
    debug_assert_eq!(b.len(), dim);
    debug_assert_eq!(x.len() % dim, 0);
    for row in x.chunks_exact_mut(dim) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
        let scale = 1.0 / (var + eps as f64).sqrt();
        for ((v, &g), &bb) in row.iter_mut().zip(w).zip(b) {
            *v = ((*v as f64 - mean) * scale) as f32 * g + bb;
        }
    }
}

/// Softmax of `x` in place, numerically stable.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// How RoPE pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (x\[2i\], x\[2i+1\]): the original LLaMA layout (ggml's "normal" mode).
    Interleaved,
    /// Halves (x\[i\], x\[i + d/2\]): GPT-NeoX layout, used by Qwen2 and Gemma (ggml's "neox" mode).
    Neox,
}

/// Rotary position embedding parameters of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub style: RopeStyle,
    /// Number of leading dimensions of each head that are rotated (usually the whole head).
    pub n_dims: usize,
    pub freq_base: f32,
    /// Linear position scaling (1.0 = none).
    pub freq_scale: f32,
}

impl Rope {
    /// Rotate `x`, laid out as [n_heads, head_dim], for a token at position `pos`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        #[cfg(target_arch = "x86_64")]
        if fma_available() {
            // SAFETY: the CPU has FMA (checked above).
            return unsafe { self.apply_fma(x, head_dim, pos) };
        }
        self.apply_body(x, head_dim, pos)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    unsafe fn apply_fma(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        self.apply_body(x, head_dim, pos)
    }

    #[inline(always)]
    fn apply_body(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let half = self.n_dims / 2;
        // Angles θ_i = pos · scale · base^(-2i/n_dims), built by repeated multiplication like ggml.
        let theta_scale = self.freq_base.powf(-2.0 / self.n_dims as f32);
        let mut cs = [(0f32, 0f32); 512];
        let mut theta = pos as f32;
        for c in cs.iter_mut().take(half) {
            let t = self.freq_scale * theta;
            *c = (t.cos(), t.sin());
            theta *= theta_scale;
        }
        for head in x.chunks_exact_mut(head_dim) {
            for (i, &(cos, sin)) in cs.iter().take(half).enumerate() {
                let (a, b) = match self.style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                // One product fused into the add, as GCC contracts ggml's `x0*cos - x1*sin`: the rounding
                // differs in the last bit, and that bit decides greedy tokens on outlier-heavy models.
                head[a] = x0.mul_add(cos, -(x1 * sin));
                head[b] = x0.mul_add(sin, x1 * cos);
            }
        }
    }
}

/// x ← silu(x) · g (the SwiGLU feed-forward gate), silu(x) = x / (1 + e^-x) with [`expf_fast`], as
/// ggml's SIMD SwiGLU computes it.
pub fn swiglu(x: &mut [f32], g: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if fma_available() {
        // SAFETY: the CPU has FMA (checked above).
        return unsafe { swiglu_fma(x, g) };
    }
    swiglu_body(x, g)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn swiglu_fma(x: &mut [f32], g: &[f32]) {
    swiglu_body(x, g)
}

#[inline(always)]
fn swiglu_body(x: &mut [f32], g: &[f32]) {
    for (v, &u) in x.iter_mut().zip(g) {
        *v = *v / (1.0 + expf_fast(-*v)) * u;
    }
}

/// Whether the CPU has fused multiply-add instructions. Code that relies on `f32::mul_add` (for its
/// single rounding) is compiled a second time with FMA enabled and chosen at run time: without the
/// instruction each `mul_add` is a slow library call, with the same result.
pub fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static FMA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FMA.get_or_init(|| is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// e^x by the polynomial ggml's vectorised code uses (`ggml_v_expf`, after ARM's optimized routines:
/// at most ~1.5 ulp from the true value). Softmax and SiLU go through it in llama.cpp, and reproducing
/// its exact roundings keeps our logits bit-identical to the reference's where the rest matches.
#[inline(always)]
pub fn expf_fast(x: f32) -> f32 {
    // ggml's constants, bit for bit (C hex floats in the original).
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23: adding it rounds to an integer
    let log2e = f32::from_bits(0x3fb8_aa3b); // 0x1.715476p+0
    let ln2_hi = f32::from_bits(0x3f31_7200); // 0x1.62e4p-1
    let ln2_lo = f32::from_bits(0x35bf_be8e); // 0x1.7f7d1cp-20
    let c = [0x3c07_2010u32, 0x3d2b_9f17, 0x3e2a_af33, 0x3eff_fedb, 0x3f7f_fff6].map(f32::from_bits);
    let z = x.mul_add(log2e, r);
    let n = z - r;
    let b = (-n).mul_add(ln2_lo, (-n).mul_add(ln2_hi, x));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = c[0].mul_add(b, c[1]).mul_add(u, c[2].mul_add(b, c[3])).mul_add(u, c[4].mul_add(b, 1.0));
    // j · 2^n with a single rounding (AVX-512's scalef): 2^n built from its exponent bits (|n| <= 192, a
    // normal f64), so the product in f64 is exact and only the conversion to f32 rounds.
    let two_n = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (j as f64 * two_n) as f32
}

/// GELU as BERT defines it (`hidden_act: "gelu"`): 0.5·x·(1 + erf(x/√2)), not the tanh approximation.
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU, tanh approximation, exact in f32.
pub fn gelu_exact(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
}

/// [`gelu_exact`] as ggml's table is built: GCC contracts `1 + a·x·x` into a fused multiply-add (which
/// changes one of the 65,536 entries).
fn gelu_ggml(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (0.044715 * x).mul_add(x, 1.0)).tanh())
}

/// GELU as ggml's CPU backend computes it: the input rounded to f16, looked up in a table of f16 results
/// (saturating outside ±10). The rounding is visible in logits, so we reproduce it.
pub fn gelu(x: f32) -> f32 {
    static TABLE: OnceLock<Vec<f16>> = OnceLock::new();
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let table = TABLE.get_or_init(|| (0..=u16::MAX).map(|i| f16::from_f32(gelu_ggml(f16::from_bits(i).to_f32()))).collect());
    table[f16::from_f32(x).to_bits() as usize].to_f32()
}

/// x ← gelu(x) · g (the GeGLU feed-forward gate).
pub fn geglu(x: &mut [f32], g: &[f32]) {
    for (v, &u) in x.iter_mut().zip(g) {
        *v = gelu(*v) * u;
    }
}

/// y ← y + x.
pub fn add_assign(y: &mut [f32], x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(a, b)| *a += b);
}

/// Add `bias` to each row of `x`.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        add_assign(row, bias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_zero_mean_unit_variance() {
        let mut x = vec![1.0, 2.0, 3.0, 6.0, -4.0, 0.0, 4.0, 8.0];
        layer_norm(&mut x, &[1.0; 4], &[0.0; 4], 1e-12);
        for row in x.chunks(4) {
            let mean: f32 = row.iter().sum::<f32>() / 4.0;
            let var: f32 = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
            assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{row:?}");
        }
        // Weight and bias apply after normalising: [-1, 1] → [-2+0.5, 2+0.5].
        let mut y = vec![3.0, 5.0];
        layer_norm(&mut y, &[2.0, 2.0], &[0.5, 0.5], 0.0);
        assert_eq!(y, [-1.5, 2.5]);
    }

    #[test]
    fn gelu_erf_known_values() {
        // 0.5·x·(1+erf(x/√2)) at x = 1 and -1 (Φ(1) = 0.841344746…).
        assert!((gelu_erf(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu_erf(-1.0) + 0.158_655_25).abs() < 1e-6);
        assert_eq!(gelu_erf(0.0), 0.0);
        // It differs from the tanh approximation (by ~1e-4 here).
        assert!((gelu_erf(1.5) - gelu_exact(1.5)).abs() > 1e-5);
    }

    #[test]
    fn rms_norm_unit_rms() {
        let mut x = vec![3.0, -4.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        rms_norm(&mut x, &[1.0, 1.0, 2.0, 1.0], 0.0);
        assert_eq!(&x[..2], &[1.2, -1.6]);
        assert_eq!(&x[4..], &[1.0, 1.0, 2.0, 1.0]);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, 1000.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] > 0.999);
    }

    #[test]
    fn rope_preserves_norm_and_rotates_by_position() {
        for style in [RopeStyle::Interleaved, RopeStyle::Neox] {
            let rope = Rope { style, n_dims: 8, freq_base: 10000.0, freq_scale: 1.0 };
            let orig: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.5).collect();
            let mut x = orig.clone();
            rope.apply(&mut x, 8, 0);
            assert_eq!(x, orig, "position 0 is the identity");
            rope.apply(&mut x, 8, 7);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = x.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-5);
            // The first pair rotates by exactly `pos` radians.
            let (a, b) = if style == RopeStyle::Interleaved { (0, 1) } else { (0, 4) };
            let expect = (orig[a] * 7f32.cos() - orig[b] * 7f32.sin(), orig[a] * 7f32.sin() + orig[b] * 7f32.cos());
            assert!((x[a] - expect.0).abs() < 1e-6 && (x[b] - expect.1).abs() < 1e-6);
        }
    }

    #[test]
    fn expf_fast_is_within_two_ulp() {
        for i in -8000..8000 {
            let x = i as f32 * 0.011;
            let (a, e) = (expf_fast(x), (x as f64).exp());
            assert!(((a as f64) - e).abs() <= 2.0 * f32::EPSILON as f64 * e, "{x}: {a} vs {e}");
        }
        assert_eq!(expf_fast(0.0), 1.0);
        assert_eq!(expf_fast(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_fast(200.0), f32::INFINITY);
        // The power of two is exact over the whole range (the previous `powi` gave the same bits).
        for i in -1000..1000 {
            let x = i as f32 * 0.137;
            let (z, r) = (x.mul_add(f32::from_bits(0x3fb8_aa3b), f32::from_bits(0x4b40_0000)), f32::from_bits(0x4b40_0000));
            let n = z - r;
            assert_eq!(f64::from_bits(((n as i64 + 1023) as u64) << 52), 2f64.powi(n as i32), "{x}");
        }
    }

    #[test]
    fn gelu_table_is_close_to_exact() {
        for i in -2000..2000 {
            let x = i as f32 * 0.01;
            let (t, e) = (gelu(x), gelu_exact(x));
            // The input is rounded to f16 (relative step 2^-11) and so is the result.
            assert!((t - e).abs() <= 1e-4 + 2e-3 * e.abs(), "{x}: {t} vs {e}");
        }
        assert_eq!(gelu(-11.0), 0.0);
        assert_eq!(gelu(12.0), 12.0);
    }
}
