//! Elementwise math over whole rows, written branch-free so the compiler vectorizes it: e^x, BERT's erf
//! GELU and a scaled softmax. Each body is compiled three times — plain (the scalar twin), AVX2 and
//! AVX-512 — and chosen at run time; without fused multiply-adds (Rust never contracts `a * b + c`) every
//! version rounds identically, so all give the same bits (tested).
//!
//! These are the encoder's: the decoders' softmax and activations follow ggml's roundings instead
//! (see [`crate::ops`]).

/// e^x for every element: range reduction to r = x − n·ln2 (|r| ≤ ln2/2, ln2 split in two parts), a
/// degree-6 polynomial, and 2^n put in the exponent bits. Within 4 ulp of the true value on [−87, 88] (the polynomial is evaluated without fused multiply-adds);
/// below −87.3 the result flushes to 0, above 88.3 it saturates at e^88.3 (n stays ≤ 127, a finite power of two).
#[inline(always)]
fn exp_body(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75; // ln2 with its low 12 bits zero: n·LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor coefficients of e^r up to r^6 (|r| ≤ 0.347: the truncation error is below 2^-25).
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = p * scale;
    if x <= -87.3 { 0.0 } else { y }
}

/// GELU(x) = x·Φ(x) = 0.5·x·(1 + erf(x/√2)), erf by Abramowitz & Stegun 7.1.26 (absolute error below
/// 1.5e-7, at the level of f32 rounding near 1).
#[inline(always)]
fn gelu_erf_body(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152_1, 1.061_405_4];
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let az = z.abs();
    let t = 1.0 / (1.0 + P * az);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf_abs = 1.0 - poly * exp_body(-az * az);
    let erf = if z < 0.0 { -erf_abs } else { erf_abs };
    0.5 * x * (1.0 + erf)
}

#[inline(always)]
fn exp_rows(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = exp_body(*v));
}

#[inline(always)]
fn gelu_rows(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu_erf_body(*v));
}

/// softmax(scale · row) in place (scale > 0); the sum is accumulated in 16 f32 lanes, then added up in order.
#[inline(always)]
fn softmax_rows(x: &mut [f32], scale: f32) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) * scale;
    let mut lanes = [0.0f32; 16];
    for chunk in x.chunks_mut(16) {
        for (l, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *v = exp_body(*v * scale - max);
            *l += *v;
        }
    }
    let sum: f32 = lanes.iter().sum();
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

/// Σ a·b in 16 f32 lanes, then the lanes added in order: the same bits in every compiled copy.
#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i];
        }
    }
    for (i, (x, y)) in ar.iter().zip(br).enumerate() {
        lanes[i] += x * y;
    }
    lanes.iter().sum()
}

/// Which compiled copy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Plain,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            if std::env::var("FERRITE_KERNELS").is_ok_and(|v| v == "scalar") {
                Level::Plain
            } else if is_x86_feature_detected!("avx512f") {
                Level::Avx512
            } else if is_x86_feature_detected!("avx2") {
                Level::Avx2
            } else {
                Level::Plain
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    Level::Plain
}

/// `pub fn $name(args)` dispatching to `$body` compiled plain, for AVX2 and for AVX-512.
macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $body:ident, ($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                match level() {
                    // SAFETY: the level was chosen from the CPU's detected features.
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    Level::Plain => {}
                }
            }
            $body($($arg),*)
        }
    };
}

dispatch!(
    /// x ← e^x elementwise.
    exp, exp_rows, (x: &mut [f32])
);
dispatch!(
    /// x ← GELU(x) elementwise (the exact, erf form BERT uses).
    gelu_erf, gelu_rows, (x: &mut [f32])
);
dispatch!(
    /// x ← softmax(scale·x): one row (attention scores before scaling).
    softmax_scaled, softmax_rows, (x: &mut [f32], scale: f32)
);

dispatch!(
    /// Σ a[i]·b[i] over the shorter length (vector similarity for nearest-neighbour search).
    dot, dot_body, (a: &[f32], b: &[f32]) -> f32
);

/// The plain (scalar) versions, for tests that compare them with the dispatched ones.
#[doc(hidden)]
pub mod scalar {
    pub fn exp(x: &mut [f32]) {
        super::exp_rows(x)
    }
    pub fn gelu_erf(x: &mut [f32]) {
        super::gelu_rows(x)
    }
    pub fn softmax_scaled(x: &mut [f32], scale: f32) {
        super::softmax_rows(x, scale)
    }
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::dot_body(a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.045).collect(); // −90 … 90
        v.extend([0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 88.3, 88.7, -87.3, 100.0, -100.0, f32::MIN_POSITIVE]);
        v
    }

    #[test]
    fn exp_within_four_ulp_and_simd_equals_scalar() {
        let x = inputs();
        let mut fast = x.clone();
        exp(&mut fast);
        let mut plain = x.clone();
        scalar::exp(&mut plain);
        assert_eq!(fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        for (&xi, &y) in x.iter().zip(&fast) {
            let want = (xi.clamp(-87.3, 88.3) as f64).exp();
            if xi <= -87.3 {
                assert_eq!(y, 0.0);
                continue;
            }
            let ulp = (want as f32).to_bits().abs_diff(y.to_bits());
            assert!(ulp <= 4, "exp({xi}) = {y}, want {want} ({ulp} ulp)");
        }
    }

    #[test]
    fn gelu_matches_erf_definition_and_simd_equals_scalar() {
        let x: Vec<f32> = (-1200..=1200).map(|i| i as f32 * 0.01).collect();
        let mut fast = x.clone();
        gelu_erf(&mut fast);
        let mut plain = x.clone();
        scalar::gelu_erf(&mut plain);
        assert_eq!(fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), plain.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        for (&xi, &y) in x.iter().zip(&fast) {
            let want = crate::ops::gelu_erf(xi); // libm's erff
            assert!((y - want).abs() <= 2e-7 * (1.0 + xi.abs()), "gelu({xi}) = {y}, want {want}");
        }
    }

    #[test]
    fn dot_simd_equals_scalar_and_f64() {
        for n in [0usize, 1, 15, 16, 17, 384, 1000] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7919 % 113) as f32 - 56.0) / 57.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 104729 % 97) as f32 - 48.0) / 49.0).collect();
            assert_eq!(dot(&a, &b).to_bits(), scalar::dot(&a, &b).to_bits());
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "n={n}");
        }
    }

    #[test]
    fn softmax_sums_to_one_matches_f64_and_simd_equals_scalar() {
        for n in [1usize, 7, 16, 33, 256] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.3).collect();
            let mut fast = x.clone();
            softmax_scaled(&mut fast, 0.25);
            let mut plain = x.clone();
            scalar::softmax_scaled(&mut plain, 0.25);
            assert_eq!(fast, plain);
            let m = x.iter().map(|&v| v as f64 * 0.25).fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = x.iter().map(|&v| (v as f64 * 0.25 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            for (a, b) in fast.iter().zip(&e) {
                assert!((*a as f64 - b / s).abs() < 1e-6, "n={n}: {a} vs {}", b / s);
            }
        }
    }
}
