//! Kernel tests: SIMD against scalar twins, scalar against dequantized f64, hand-checked quantizers,
//! and the public functions' error paths. (Dequantization itself is checked against gguf-py in
//! `tests/golden.rs`.)

use super::*;
use crate::testutil::*;

/// Row lengths to try: single blocks (where one wrong element stands out far above the tolerance), odd
/// block counts, model-sized rows, and for plain types every tail length of the SIMD loops.
fn lengths(dtype: DType) -> &'static [usize] {
    match dtype.block_size() {
        1 => &[1, 7, 8, 9, 31, 32, 33, 63, 100, 4096, 4096 + 13],
        32 => &[32, 64, 96, 288, 4096, 11008],
        _ => &[256, 512, 768, 4096, 11008],
    }
}

/// `a` quantized (by the scalar reference) to the activation format of `weight`.
fn act_row(weight: DType, a: &[f32]) -> Vec<u8> {
    let act = vec_dot_type(weight);
    let mut out = vec![0u8; row_bytes(act, a.len()).unwrap()];
    quantize_unchecked(&SCALAR, act, a, &mut out);
    out
}

#[cfg(target_arch = "x86_64")]
fn skip_without_avx2(test: &str) -> bool {
    if avx2_available() {
        return false;
    }
    println!("{test}: skipped, this CPU lacks AVX2/FMA/F16C");
    true
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_dot_matches_scalar_for_every_type() {
    if skip_without_avx2("avx2_dot_matches_scalar_for_every_type") {
        return;
    }
    let mut rng = Rng::new(1);
    for dtype in WEIGHT_TYPES {
        for &n in lengths(dtype) {
            for _ in 0..3 {
                let w = random_weight_row(dtype, n, &mut rng);
                let x = act_row(dtype, &rng.activations(n));
                let s = dot_unchecked(&SCALAR, dtype, &w, &x, n);
                let v = dot_unchecked(&AVX2, dtype, &w, &x, n);
                let abs = abs_dot(&dequant(dtype, &w, n), &dequant(vec_dot_type(dtype), &x, n));
                let tol = reorder_tolerance(n / dtype.block_size(), abs);
                assert!(((s - v) as f64).abs() <= tol, "{dtype} n={n}: scalar {s} vs avx2 {v} (diff {}, tolerance {tol})", s - v);
            }
        }
    }
}

/// Catches a kernel whose scalar twin shares its mistake: the scalar dot must equal the f64 dot of the
/// dequantized rows (dequantization is golden-tested against gguf-py).
#[test]
fn scalar_dot_matches_dequantized_f64_dot() {
    let mut rng = Rng::new(2);
    for dtype in WEIGHT_TYPES {
        for &n in lengths(dtype) {
            let w = random_weight_row(dtype, n, &mut rng);
            let x = act_row(dtype, &rng.activations(n));
            let (wf, xf) = (dequant(dtype, &w, n), dequant(vec_dot_type(dtype), &x, n));
            let got = dot_unchecked(&SCALAR, dtype, &w, &x, n) as f64;
            let mut tol = reorder_tolerance(n / dtype.block_size(), abs_dot(&wf, &xf));
            if vec_dot_type(dtype) == DType::Q8_1 {
                // The kernel uses Q8_1's `s = d·Σq`, stored as f16 (relative error up to 2^-11), for the
                // weight's min: Σ|m·s|·2^-11 more.
                tol += min_times_s(dtype, &w, &x) * (-11f64).exp2();
            }
            let want = dot64(&wf, &xf);
            assert!((got - want).abs() <= tol, "{dtype} n={n}: kernel {got} vs dequantized {want} (tolerance {tol})");
        }
    }
}

/// The 32-element formats and `Q6_K` take ggml's `vec_dot` lanes in every tier, so the scalar, AVX2 and
/// VNNI kernels agree bit for bit (the other K-quants' `vec_dot` only within rounding).
#[cfg(target_arch = "x86_64")]
#[test]
fn lanes_formats_match_across_tiers_bit_for_bit() {
    if skip_without_avx2("lanes_formats_match_across_tiers_bit_for_bit") {
        return;
    }
    let mut rng = Rng::new(4);
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q6K] {
        for &n in lengths(dtype) {
            for _ in 0..3 {
                let w = random_weight_row(dtype, n, &mut rng);
                let x = act_row(dtype, &rng.activations(n));
                let s = dot_in_unchecked(&SCALAR, Accumulation::Lanes, dtype, &w, &x, n);
                for (tier, k) in [("avx2", &AVX2), ("avx512vnni", &AVX512VNNI)] {
                    if tier == "avx512vnni" && !super::vnni::available() {
                        continue;
                    }
                    let v = dot_in_unchecked(k, Accumulation::Lanes, dtype, &w, &x, n);
                    assert_eq!(s.to_bits(), v.to_bits(), "{dtype} n={n}: scalar {s} vs {tier} {v}");
                }
            }
        }
    }
}

/// The K-quant types and orders that have their own kernels (see `accumulate`).
const ORDERED: [(DType, Accumulation); 6] = [
    (DType::Q4_0, Accumulation::Rows),
    (DType::Q4K, Accumulation::Rows),
    (DType::Q4K, Accumulation::RowsBy64),
    (DType::Q4K, Accumulation::Tiled),
    (DType::Q5K, Accumulation::Tiled),
    (DType::Q6K, Accumulation::Tiled),
];

/// The row-wise orders' integer sums are exact and their float steps identical in every tier, so the
/// tiers agree bit for bit (a stricter bar than the lane-order kernels' reorder tolerance).
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_row_orders_match_scalar_bit_for_bit() {
    if skip_without_avx2("avx2_row_orders_match_scalar_bit_for_bit") {
        return;
    }
    let mut rng = Rng::new(3);
    for (dtype, order) in ORDERED {
        for &n in lengths(dtype) {
            for _ in 0..3 {
                let w = random_weight_row(dtype, n, &mut rng);
                let x = act_row(dtype, &rng.activations(n));
                let s = dot_in_unchecked(&SCALAR, order, dtype, &w, &x, n);
                let v = dot_in_unchecked(&AVX2, order, dtype, &w, &x, n);
                assert_eq!(s.to_bits(), v.to_bits(), "{dtype} {order:?} n={n}: scalar {s} vs avx2 {v}");
            }
        }
    }
}

/// The four-token kernels equal four single calls, in every tier.
#[test]
fn four_token_kernels_equal_four_single_calls() {
    let mut rng = Rng::new(6);
    let cases = [
        (DType::Q4K, Accumulation::RowsBy64),
        (DType::Q4K, Accumulation::Rows),
        (DType::Q6K, Accumulation::Tiled),
        (DType::Q6K, Accumulation::Lanes),
        (DType::Q4_0, Accumulation::Lanes),
        (DType::Q4_1, Accumulation::Lanes),
        (DType::Q5_0, Accumulation::Lanes),
        (DType::Q8_0, Accumulation::Lanes),
    ];
    for (dtype, order) in cases {
        assert!(has_dot4(order, dtype));
        for &n in lengths(dtype) {
            let w = random_weight_row(dtype, n, &mut rng);
            let xs: Vec<Vec<u8>> = (0..4).map(|_| act_row(dtype, &rng.activations(n))).collect();
            for k in tiers() {
                let four = dot4_unchecked(k, order, dtype, &w, [&xs[0], &xs[1], &xs[2], &xs[3]]);
                for (t, x) in xs.iter().enumerate() {
                    let one = dot_in_unchecked(k, order, dtype, &w, x, n);
                    assert_eq!(four[t].to_bits(), one.to_bits(), "{dtype} {} n={n} token {t}: {} vs {one}", k.tier, four[t]);
                }
            }
        }
    }
}

/// The eight-token kernels (activation scales given as f32) equal eight single calls of their own tier
/// and of the scalar tier, bit for bit, including activations at the extremes (every quant ±127).
#[test]
fn eight_token_kernels_equal_eight_single_calls() {
    let mut rng = Rng::new(9);
    let mut checked = 0;
    for dtype in [DType::Q4_0, DType::Q5_0, DType::Q8_0] {
        for &n in lengths(dtype) {
            let w = random_weight_row(dtype, n, &mut rng);
            let xs: Vec<Vec<u8>> = (0..8)
                .map(|t| {
                    let mut x = act_row(dtype, &rng.activations(n));
                    if t == 3 {
                        for (i, b) in x.iter_mut().enumerate() {
                            if i % 34 >= 2 {
                                *b = if i % 3 == 0 { 0x81 } else { 0x7f };
                            }
                        }
                    }
                    x
                })
                .collect();
            let ds: Vec<Vec<f32>> = xs
                .iter()
                .map(|x| {
                    let mut d = Vec::new();
                    widen_scales(x, &mut d);
                    d
                })
                .collect();
            for k in tiers() {
                let Some(eight) = dot8_unchecked(
                    k,
                    Accumulation::Lanes,
                    dtype,
                    &w,
                    std::array::from_fn(|t| &xs[t][..]),
                    std::array::from_fn(|t| &ds[t][..]),
                ) else {
                    assert!(!has_dot8(k, Accumulation::Lanes, dtype));
                    continue;
                };
                assert!(has_dot8(k, Accumulation::Lanes, dtype));
                for (t, x) in xs.iter().enumerate() {
                    for base in [k, &SCALAR] {
                        let one = dot_in_unchecked(base, Accumulation::Lanes, dtype, &w, x, n);
                        assert_eq!(
                            eight[t].to_bits(),
                            one.to_bits(),
                            "{dtype} {} vs {} n={n} token {t}: {} vs {one}",
                            k.tier,
                            base.tier,
                            eight[t]
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    println!("eight_token_kernels_equal_eight_single_calls: {checked} kernel cases checked");
}

/// The two-row kernels equal two single calls, in every tier that has them.
#[test]
fn two_row_kernels_equal_two_single_calls() {
    let mut rng = Rng::new(8);
    let cases = [
        (DType::Q4K, Accumulation::Rows),
        (DType::Q6K, Accumulation::Lanes),
        (DType::Q4_0, Accumulation::Lanes),
        (DType::Q5_0, Accumulation::Lanes),
        (DType::Q8_0, Accumulation::Lanes),
    ];
    let mut checked = 0;
    for (dtype, order) in cases {
        for &n in lengths(dtype) {
            let rows: Vec<Vec<u8>> = (0..2).map(|_| random_weight_row(dtype, n, &mut rng)).collect();
            let x = act_row(dtype, &rng.activations(n));
            for k in tiers() {
                let Some(two) = dot_r2_unchecked(k, order, dtype, [&rows[0], &rows[1]], &x) else { continue };
                assert!(has_dot_r2(k, order, dtype));
                for (r, row) in rows.iter().enumerate() {
                    let one = dot_in_unchecked(k, order, dtype, row, &x, n);
                    assert_eq!(two[r].to_bits(), one.to_bits(), "{dtype} {} n={n} row {r}: {} vs {one}", k.tier, two[r]);
                }
                checked += 1;
            }
        }
    }
    println!("two_row_kernels_equal_two_single_calls: {checked} kernel cases checked");
}

#[test]
fn row_orders_match_dequantized_f64_dot() {
    let mut rng = Rng::new(4);
    for (dtype, order) in ORDERED {
        for &n in lengths(dtype) {
            let w = random_weight_row(dtype, n, &mut rng);
            let x = act_row(dtype, &rng.activations(n));
            let (wf, xf) = (dequant(dtype, &w, n), dequant(vec_dot_type(dtype), &x, n));
            let got = dot_in_unchecked(&SCALAR, order, dtype, &w, &x, n) as f64;
            let tol = reorder_tolerance(n / dtype.block_size(), abs_dot(&wf, &xf));
            let want = dot64(&wf, &xf);
            assert!((got - want).abs() <= tol, "{dtype} {order:?} n={n}: kernel {got} vs dequantized {want} (tolerance {tol})");
        }
    }
}

/// One super-block worked by hand: with a single block every order is `isum·d_w·d_a − imin·dmin_w·d_a`
/// up to rounding, and the fused steps make `Tiled` round once where `Rows` rounds `d_w·d_a` first.
#[test]
fn row_orders_on_one_super_block_follow_their_formulas() {
    let mut rng = Rng::new(5);
    let w = random_weight_row(DType::Q4K, 256, &mut rng);
    let x = act_row(DType::Q4K, &rng.activations(256));
    let (bw, bx) = (as_blocks::<BlockQ4K>(&w)[0], as_blocks::<BlockQ8K>(&x)[0]);
    let (isum, imin) = scalar::q4k_isums(&bw, &bx);
    let (d, dmin, da) = (bw.d.to_f32(), bw.dmin.to_f32(), bx.d);
    let rows = (isum as f32 * (d * da)) - (imin as f32 * (dmin * da));
    let tiled = (-dmin).mul_add(imin as f32, isum as f32 * d) * da;
    assert_eq!(dot_in_unchecked(&SCALAR, Accumulation::Rows, DType::Q4K, &w, &x, 256), rows);
    assert_eq!(dot_in_unchecked(&SCALAR, Accumulation::Tiled, DType::Q4K, &w, &x, 256), tiled);
}

#[test]
fn accumulation_follows_ggml_dispatch() {
    use Accumulation::*;
    // Q4_K with rows % 8 == 0 is repacked by ggml whatever the batch: gemm for groups of four tokens,
    // gemv for the rest.
    assert_eq!(accumulation(DType::Q4K, 896, 1, 0), Rows);
    assert_eq!(accumulation(DType::Q4K, 896, 512, 511), RowsBy64);
    let eleven: Vec<_> = (0..11).map(|i| accumulation(DType::Q4K, 896, 11, i)).collect();
    assert_eq!(eleven, [[RowsBy64; 8].as_slice(), &[Rows; 3]].concat());
    // Otherwise K-quants are tiled from 8 tokens on.
    assert_eq!(accumulation(DType::Q4K, 900, 7, 6), Lanes);
    assert_eq!(accumulation(DType::Q4K, 900, 8, 0), Tiled);
    assert_eq!(accumulation(DType::Q6K, 896, 7, 0), Lanes);
    assert_eq!(accumulation(DType::Q6K, 896, 8, 7), Tiled);
    assert_eq!(accumulation(DType::Q5K, 896, 64, 3), Tiled);
    // Q4_0 with rows % 8 == 0 is repacked too, one order for any batch.
    assert_eq!(accumulation(DType::Q4_0, 896, 1, 0), Rows);
    assert_eq!(accumulation(DType::Q4_0, 896, 512, 7), Rows);
    assert_eq!(accumulation(DType::Q4_0, 900, 512, 7), Lanes);
    // Everything else always takes vec_dot's lanes.
    for dtype in [DType::Q5_0, DType::Q8_0, DType::Q3K, DType::F16] {
        assert_eq!(accumulation(dtype, 896, 512, 0), Lanes, "{dtype}");
    }
}

/// `Σ_b |m_b · s_b|` for a `Q4_1`/`Q5_1` row against its `Q8_1` activations.
fn min_times_s(dtype: DType, w: &[u8], x: &[u8]) -> f64 {
    let mins: Vec<f32> = match dtype {
        DType::Q4_1 => as_blocks::<BlockQ4_1>(w).iter().map(|b| b.m.to_f32()).collect(),
        DType::Q5_1 => as_blocks::<BlockQ5_1>(w).iter().map(|b| b.m.to_f32()).collect(),
        _ => unreachable!(),
    };
    let s = as_blocks::<BlockQ8_1>(x).iter().map(|b| b.s.to_f32());
    mins.iter().zip(s).map(|(&m, s)| (m as f64 * s as f64).abs()).sum()
}

/// Rows that probe the quantizers' corner cases, each a multiple of 256 long.
#[cfg(target_arch = "x86_64")]
fn quantizer_inputs(rng: &mut Rng) -> Vec<Vec<f32>> {
    let mut cases = vec![rng.activations(256), rng.activations(4096), vec![0.0; 512]];
    // Exact halves with a scale of 1 (amax = 127): ties must round away from zero (Q8_0) / to even (Q8_K).
    let mut ties: Vec<f32> = (0..256).map(|i| (i % 64) as f32 - 31.5).collect();
    ties[0] = -127.0;
    ties[40] = 127.0;
    cases.push(ties);
    // The largest magnitude appears with both signs: Q8_K must take the first one's sign.
    let mut both = rng.activations(256);
    both[3] = 5.0;
    both[200] = -5.0;
    cases.push(both);
    // Tiny, huge and subnormal magnitudes; a zero 32-block inside a non-zero row.
    cases.push((0..256).map(|i| (i as f32 - 128.0) * 1e-30).collect());
    cases.push((0..256).map(|i| (i as f32 - 100.0) * 1e30).collect());
    let mut mixed = rng.activations(256);
    mixed[32..64].fill(0.0);
    mixed[100] = f32::from_bits(1); // smallest subnormal
    cases.push(mixed);
    cases
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_quantizers_match_scalar_bit_for_bit() {
    if skip_without_avx2("avx2_quantizers_match_scalar_bit_for_bit") {
        return;
    }
    let mut rng = Rng::new(3);
    for x in quantizer_inputs(&mut rng) {
        for dtype in [DType::Q8_0, DType::Q8K] {
            let mut s = vec![0u8; row_bytes(dtype, x.len()).unwrap()];
            let mut v = s.clone();
            quantize_unchecked(&SCALAR, dtype, &x, &mut s);
            quantize_unchecked(&AVX2, dtype, &x, &mut v);
            assert_eq!(s, v, "{dtype}: avx2 quantization differs from scalar for input starting {:?}", &x[..4]);
        }
    }
}

/// Every kernel set this CPU can run, so hand-checked cases cover the scalar twins too.
fn tiers() -> Vec<&'static Kernels> {
    #[cfg(target_arch = "x86_64")]
    if super::vnni::available() {
        return vec![&SCALAR, &AVX2, &AVX512VNNI];
    }
    #[cfg(target_arch = "x86_64")]
    if avx2_available() {
        return vec![&SCALAR, &AVX2];
    }
    vec![&SCALAR]
}

/// `x` quantized to `dtype` by each tier, all of which must agree; returns the common encoding.
fn quantize_all_tiers(dtype: DType, x: &[f32]) -> Vec<u8> {
    let mut first: Option<Vec<u8>> = None;
    for k in tiers() {
        let mut out = vec![0u8; row_bytes(dtype, x.len()).unwrap()];
        quantize_unchecked(k, dtype, x, &mut out);
        match &first {
            None => first = Some(out),
            Some(f) => assert_eq!(f, &out, "{dtype}: tier {} differs from scalar", k.tier),
        }
    }
    first.unwrap_or_default()
}

#[test]
fn q8_0_quantization_hand_checked() {
    // amax = 127 gives d = 1 exactly, so the quants are the inputs rounded half to even (ggml's x86 rounding).
    let mut x = [0.0f32; 32];
    x[..8].copy_from_slice(&[127.0, 2.5, -2.5, 0.5, -0.5, 1.4999, -126.5, 3.0]);
    let out = quantize_all_tiers(DType::Q8_0, &x);
    let b = as_blocks::<BlockQ8_0>(&out)[0];
    assert_eq!(b.d.to_f32(), 1.0);
    assert_eq!(&b.qs[..8], &[127, 2, -2, 0, 0, 1, -126, 3]);
    assert!(b.qs[8..].iter().all(|&q| q == 0));

    // An all-zero block: d = 0, quants 0.
    assert_eq!(quantize_all_tiers(DType::Q8_0, &[0.0; 32]), vec![0u8; 34]);
}

#[test]
fn q8_1_quantization_hand_checked() {
    let mut x = [0.0f32; 32];
    x[..4].copy_from_slice(&[-127.0, 2.5, 10.0, -0.5]);
    let out = quantize_all_tiers(DType::Q8_1, &x);
    let b = as_blocks::<BlockQ8_1>(&out)[0];
    assert_eq!(b.d.to_f32(), 1.0);
    assert_eq!(&b.qs[..4], &[-127, 2, 10, 0]);
    assert_eq!(b.s.to_f32(), (-127 + 2 + 10) as f32);
}

#[test]
fn q8_k_quantization_hand_checked() {
    // The first value of largest magnitude is −127, so iscale = −127/−127 = 1 and d = 1: quants are the
    // inputs rounded half to even, capped at 127 (the later +127 stays 127).
    let mut x = [0.0f32; 256];
    x[..8].copy_from_slice(&[-127.0, 2.5, 3.5, -2.5, 0.5, 1.5, 127.0, 126.6]);
    x[16] = 7.0;
    let out = quantize_all_tiers(DType::Q8K, &x);
    let b = as_blocks::<BlockQ8K>(&out)[0];
    let (d, qs, bsums) = (b.d, b.qs, b.bsums);
    assert_eq!(d, 1.0);
    assert_eq!(&qs[..8], &[-127, 2, 4, -2, 0, 2, 127, 127]);
    assert_eq!(qs[16], 7);
    assert_eq!(bsums[0], -127 + 2 + 4 - 2 + 2 + 127 + 127);
    assert_eq!(bsums[1], 7);
    assert!(bsums[2..].iter().all(|&s| s == 0));

    // Positive maximum: the scale is negative (iscale = −1, d = −1) and every quant flips sign.
    let y: Vec<f32> = x.iter().map(|v| -v).collect();
    let out = quantize_all_tiers(DType::Q8K, &y);
    let b = as_blocks::<BlockQ8K>(&out)[0];
    let (d, qs) = (b.d, b.qs);
    assert_eq!(d, -1.0);
    assert_eq!(&qs[..8], &[-127, 2, 4, -2, 0, 2, 127, 127]);

    // All zeros.
    assert_eq!(quantize_all_tiers(DType::Q8K, &[0.0; 256]), vec![0u8; 292]);
}

#[test]
fn bf16_and_f16_activations_round_to_nearest_even() {
    // 1 + 2^-8 is exactly halfway between two bf16 values (1 and 1 + 2^-7): ties go to the even one, 1.
    let x = [1.0 + (-8f32).exp2(), 1.0 + 3.0 * (-8f32).exp2(), f32::NAN, -0.0];
    let mut out = [0u8; 8];
    quantize_row(DType::BF16, &x, &mut out).unwrap();
    let bits: Vec<u16> = out.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    assert_eq!(bits[0], 0x3f80);
    assert_eq!(bits[1], 0x3f82);
    assert_eq!(bits[2] & 0x7fc0, 0x7fc0, "NaN stays a quiet NaN");
    assert_eq!(bits[3], 0x8000);

    let mut out = [0u8; 8];
    quantize_row(DType::F16, &[1.0 + (-11f32).exp2(), 65504.0, 1e6, -2.0], &mut out).unwrap();
    let bits: Vec<u16> = out.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    assert_eq!(bits, [0x3c00, 0x7bff, 0x7c00, 0xc000]);
}

#[test]
fn vec_dot_type_pairs_like_ggml() {
    use DType::*;
    for (w, a) in [
        (Q4_0, Q8_0),
        (Q5_0, Q8_0),
        (Q8_0, Q8_0),
        (Q4_1, Q8_1),
        (Q5_1, Q8_1),
        (Q2K, Q8K),
        (Q3K, Q8K),
        (Q4K, Q8K),
        (Q5K, Q8K),
        (Q6K, Q8K),
        (F32, F32),
        (F16, F16),
        (BF16, BF16),
    ] {
        assert_eq!(vec_dot_type(w), a, "{w}");
    }
}

#[test]
fn public_functions_reject_bad_input() {
    let w = vec![0u8; 18];
    let x = vec![0u8; 34];
    assert_eq!(try_vec_dot(DType::Q4_0, &w, &x, 32), Ok(0.0));
    assert!(matches!(try_vec_dot(DType::Q4_0, &w, &x, 64), Err(TensorError::Length { .. })));
    assert!(matches!(try_vec_dot(DType::Q4_0, &w, &x[..33], 32), Err(TensorError::Length { .. })));
    assert!(matches!(try_vec_dot(DType::Q4_0, &w, &x, 33), Err(TensorError::NotBlockMultiple { .. })));
    assert!(matches!(try_vec_dot(DType::IQ2XXS, &w, &x, 256), Err(TensorError::Unsupported { .. })));
    assert!(vec_dot(DType::Q4_0, &w, &x, 64).is_nan());

    let mut out = vec![0.0f32; 32];
    assert!(matches!(dequantize_row(DType::Q4_0, &w[..17], &mut out), Err(TensorError::Length { .. })));
    assert!(matches!(dequantize_row(DType::Q4K, &w, &mut out), Err(TensorError::NotBlockMultiple { .. })));
    assert!(matches!(dequantize_row(DType::IQ4NL, &w, &mut out), Err(TensorError::Unsupported { .. })));

    let mut q = vec![0u8; 18];
    assert!(matches!(quantize_row(DType::Q4_0, &[0.0; 32], &mut q), Err(TensorError::Unsupported { .. })));
    assert!(matches!(quantize_row(DType::Q8_0, &[0.0; 32], &mut q), Err(TensorError::Length { .. })));
}

#[test]
fn kernel_tier_is_the_best_available_unless_capped() {
    let tier = kernel_tier();
    match std::env::var("FERRITE_KERNELS").ok().as_deref() {
        Some("scalar") => assert_eq!(tier, "scalar"),
        Some("avx2") if avx2_available() => assert_eq!(tier, "avx2"),
        #[cfg(target_arch = "x86_64")]
        _ if super::vnni::available() => assert_eq!(tier, "avx512vnni"),
        _ if avx2_available() => assert_eq!(tier, "avx2"),
        _ => assert_eq!(tier, "scalar"),
    }
}

/// The VNNI kernels give the AVX2 kernels' bits exactly, single rows and four at a time, on random rows
/// and on the extreme values (weights at ±127/−128, activations at ±127).
#[cfg(target_arch = "x86_64")]
#[test]
fn vnni_kernels_are_bit_identical_to_avx2() {
    if !super::vnni::available() {
        println!("vnni_kernels_are_bit_identical_to_avx2: skipped, this CPU lacks AVX-512 VNNI");
        return;
    }
    let mut rng = Rng::new(7);
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0] {
        for &n in lengths(dtype) {
            for case in 0..4 {
                let mut w = random_weight_row(dtype, n, &mut rng);
                let mut xs: Vec<Vec<u8>> = (0..4).map(|_| act_row(dtype, &rng.activations(n))).collect();
                if case == 3 && dtype == DType::Q8_0 {
                    // Extremes: every weight quant at -128 or 127, every activation quant at +-127.
                    let bs = dtype.type_size();
                    for (i, b) in w.iter_mut().enumerate() {
                        if i % bs >= 2 {
                            *b = if i % 2 == 0 { 0x80 } else { 0x7f };
                        }
                    }
                    for x in xs.iter_mut() {
                        for (i, b) in x.iter_mut().enumerate() {
                            if i % bs >= 2 {
                                *b = if i % 3 == 0 { 0x81 } else { 0x7f };
                            }
                        }
                    }
                }
                for x in &xs {
                    let a = dot_unchecked(&AVX2, dtype, &w, x, n);
                    let v = dot_unchecked(&AVX512VNNI, dtype, &w, x, n);
                    assert_eq!(a.to_bits(), v.to_bits(), "{dtype} n={n} case {case}: {a} vs {v}");
                }
                let order = Accumulation::Lanes;
                let refs = [&xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]];
                let a = dot4_unchecked(&AVX2, order, dtype, &w, refs);
                let v = dot4_unchecked(&AVX512VNNI, order, dtype, &w, refs);
                assert_eq!(a.map(f32::to_bits), v.map(f32::to_bits), "{dtype} n={n} case {case}: x4");
                // Four weight rows at once: each row against the four tokens as the x4 kernel gives.
                let rows: Vec<Vec<u8>> = (0..4).map(|i| if i == 0 { w.clone() } else { random_weight_row(dtype, n, &mut rng) }).collect();
                let wrefs = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
                if let Some(m) = dot4x4_unchecked(&AVX512VNNI, order, dtype, wrefs, refs) {
                    for (r, row) in rows.iter().enumerate() {
                        let want = dot4_unchecked(&AVX2, order, dtype, row, refs);
                        assert_eq!(m[r].map(f32::to_bits), want.map(f32::to_bits), "{dtype} n={n} case {case}: 4x4 row {r}");
                    }
                } else {
                    assert!(!matches!(dtype, DType::Q4_0 | DType::Q5_0 | DType::Q8_0), "{dtype}: no 4x4 kernel");
                }
                // Two weight rows against one token: each as the AVX2 single-row kernel gives.
                let pair = [&rows[0][..], &rows[3][..]];
                if let Some(v) = dot_r2_unchecked(&AVX512VNNI, order, dtype, pair, &xs[1]) {
                    for (r, row) in pair.iter().enumerate() {
                        let want = dot_unchecked(&AVX2, dtype, row, &xs[1], n);
                        assert_eq!(v[r].to_bits(), want.to_bits(), "{dtype} n={n} case {case}: r2 row {r}");
                    }
                } else {
                    assert!(!matches!(dtype, DType::Q4_0 | DType::Q5_0 | DType::Q8_0), "{dtype}: no r2 kernel");
                }
            }
        }
    }
}

/// Sixteen random `Q4_0` rows of `n` columns (every fourth row at the nibble extremes 0 and 15).
fn q4_0_rows16(n: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..16)
        .map(|r| {
            let mut w = random_weight_row(DType::Q4_0, n, rng);
            if r % 4 == 3 {
                for (i, b) in w.iter_mut().enumerate() {
                    if i % 18 >= 2 {
                        *b = if i % 3 == 0 { 0xF0 } else { 0x0F };
                    }
                }
            }
            w
        })
        .collect()
}

fn interleave16(rows: &[Vec<u8>]) -> Vec<BlockQ4_0x16> {
    let blocks: [&[BlockQ4_0]; 16] = std::array::from_fn(|r| as_blocks(&rows[r]));
    (0..blocks[0].len()).map(|b| BlockQ4_0x16::pack(blocks, b)).collect()
}

/// The interleaved kernel, for every token count a pass can have (1 to 8, and 11 = 8 + 3), gives each
/// original row's `Rows`-order bits against each token; so does its scalar twin.
#[test]
fn interleaved_q4_0_kernel_matches_rows_order_bit_for_bit() {
    let mut rng = Rng::new(9);
    for &n in lengths(DType::Q4_0) {
        let rows = q4_0_rows16(n, &mut rng);
        let packed = interleave16(&rows);
        for (r, row) in rows.iter().enumerate() {
            assert_eq!(bytemuck::cast_slice::<BlockQ4_0, u8>(&packed.iter().map(|b| b.unpack(r)).collect::<Vec<_>>()), &row[..]);
        }
        for tokens in [1, 2, 3, 4, 5, 6, 7, 8, 11] {
            let mut xq = Vec::new();
            for t in 0..tokens {
                let mut x = act_row(DType::Q4_0, &rng.activations(n));
                if t == 1 {
                    // Extremes: every activation quant at +-127.
                    for (i, b) in x.iter_mut().enumerate() {
                        if i % 34 >= 2 {
                            *b = if i % 5 == 0 { 0x81 } else { 0x7f };
                        }
                    }
                }
                xq.extend(x);
            }
            let q: &[BlockQ8_0] = as_blocks(&xq);
            let want = |r: usize, t: usize| scalar::dot_q4_0_q8_0_rows(as_blocks(&rows[r]), &q[t * (n / 32)..][..n / 32]);
            for t in 0..tokens {
                let twin = scalar::dot_q4_0x16_q8_0(&packed, &q[t * (n / 32)..][..n / 32]);
                for (r, v) in twin.iter().enumerate() {
                    assert_eq!(v.to_bits(), want(r, t).to_bits(), "n={n} scalar twin row {r} token {t}");
                }
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(dot) = AVX512VNNI.q4_0x16.filter(|_| super::vnni::available()) {
                let (mut sums, mut d) = (Vec::new(), Vec::new());
                interleaved::block_sums(q, &mut sums, &mut d);
                let x = interleaved::QuantizedRows { q, sums: &sums, d: &d, blocks: n / 32 };
                // Tokens 1.. alone and all of them from token 0.
                for range in [1..tokens, 0..tokens] {
                    let mut out = vec![[f32::NAN; 16]; range.len()];
                    unsafe { dot(&packed, &x, range.clone(), &mut out, bytemuck::cast_slice(&packed)) };
                    for (i, o) in out.iter().enumerate() {
                        for (r, v) in o.iter().enumerate() {
                            let t = range.start + i;
                            assert_eq!(
                                v.to_bits(),
                                want(r, t).to_bits(),
                                "n={n} tokens {range:?}: row {r} token {t}: {v} vs {}",
                                want(r, t)
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The interleaved `Q4_K` kernel and its scalar twin give each original row's bits in both of ggml's
/// repacked orders, for every token count a pass can have (1 to 4, and 7 = 4 + 3).
#[test]
fn interleaved_q4k_kernel_matches_row_orders_bit_for_bit() {
    let mut rng = Rng::new(10);
    for &n in lengths(DType::Q4K) {
        let nb = n / 256;
        let rows: Vec<Vec<u8>> = (0..16).map(|_| random_weight_row(DType::Q4K, n, &mut rng)).collect();
        let blocks: [&[BlockQ4K]; 16] = std::array::from_fn(|r| as_blocks(&rows[r]));
        let packed: Vec<BlockQ4Kx16> = (0..nb).map(|b| BlockQ4Kx16::pack(blocks, b)).collect();
        for tokens in [1, 2, 3, 4, 7] {
            let xq: Vec<u8> = (0..tokens).flat_map(|_| act_row(DType::Q4K, &rng.activations(n))).collect();
            let q: &[BlockQ8K] = as_blocks(&xq);
            let tok = |t: usize| &q[t * nb..][..nb];
            for by_64 in [false, true] {
                let want = |r: usize, t: usize| {
                    if by_64 { scalar::dot_q4k_q8k_rows_by_64(blocks[r], tok(t)) } else { scalar::dot_q4k_q8k_rows(blocks[r], tok(t)) }
                };
                for t in 0..tokens {
                    let twin = scalar::dot_q4kx16_q8k(&packed, tok(t), by_64);
                    for (r, v) in twin.iter().enumerate() {
                        assert_eq!(v.to_bits(), want(r, t).to_bits(), "n={n} by_64={by_64} scalar twin row {r} token {t}");
                    }
                }
                #[cfg(target_arch = "x86_64")]
                if let Some(dot) = AVX512VNNI.q4kx16.filter(|_| super::vnni::available()) {
                    let mut pairs = Vec::new();
                    interleaved::pair_sums(q, &mut pairs);
                    let x = interleaved::QuantizedRowsK { q, pairs: &pairs, blocks: nb };
                    for range in [1..tokens, 0..tokens] {
                        let mut out = vec![[f32::NAN; 16]; range.len()];
                        unsafe { dot(&packed, &x, range.clone(), by_64, &mut out, bytemuck::cast_slice(&packed)) };
                        for (i, o) in out.iter().enumerate() {
                            for (r, v) in o.iter().enumerate() {
                                let t = range.start + i;
                                assert_eq!(v.to_bits(), want(r, t).to_bits(), "n={n} by_64={by_64} {range:?}: row {r} token {t}");
                            }
                        }
                    }
                }
            }
        }
    }
}

/// For [`interleaved_lanes_kernels_match_vec_dot_bit_for_bit`], one format: packs the sixteen `rows`,
/// checks that each unpacks back to its row, and returns each row's lanes-order dot product with each
/// of the `tokens` activation rows (`tok(t)`), the scalar twin's, and the packed bytes.
fn lanes_case<'a, W: bytemuck::Pod, P: bytemuck::Pod>(
    rows: &[Vec<u8>],
    tok: impl Fn(usize) -> &'a [BlockQ8_0],
    tokens: usize,
    pack: fn([&[W]; 16], usize) -> P,
    unpack: fn(&P, usize) -> W,
    dot: fn(&[W], &[BlockQ8_0]) -> f32,
    twin: fn(&[P], &[BlockQ8_0]) -> [f32; 16],
) -> (Vec<[f32; 16]>, Vec<[f32; 16]>, Vec<u8>) {
    let blocks: [&[W]; 16] = std::array::from_fn(|r| as_blocks(&rows[r]));
    let packed: Vec<P> = (0..blocks[0].len()).map(|b| pack(blocks, b)).collect();
    for (r, row) in rows.iter().enumerate() {
        let back: Vec<W> = packed.iter().map(|b| unpack(b, r)).collect();
        assert_eq!(bytemuck::cast_slice::<W, u8>(&back), &row[..], "unpack row {r}");
    }
    let want = (0..tokens).map(|t| std::array::from_fn(|r| dot(blocks[r], tok(t)))).collect();
    let twins = (0..tokens).map(|t| twin(&packed, tok(t))).collect();
    (want, twins, bytemuck::cast_slice(&packed).to_vec())
}

/// `Q5_0` and `Q8_0` keep `vec_dot`'s eight lanes: the scalar [`scalar::vec_dot_q5_0_q8_0`] order
/// is the AVX2 and VNNI kernels' bit for bit; the sixteen-row interleaved blocks give back their rows;
/// and the interleaved kernel and its scalar twin give each row's lanes-order bits against each token,
/// for every token count a pass can have (1, 2, and 5 = 2 + 2 + 1).
#[test]
fn interleaved_lanes_kernels_match_vec_dot_bit_for_bit() {
    let mut rng = Rng::new(11);
    for dtype in [DType::Q5_0, DType::Q8_0] {
        for &n in lengths(dtype) {
            let nb = n / 32;
            let rows: Vec<Vec<u8>> = (0..16).map(|_| random_weight_row(dtype, n, &mut rng)).collect();
            for tokens in [1, 2, 5] {
                let mut xq = Vec::new();
                for t in 0..tokens {
                    let mut x = act_row(dtype, &rng.activations(n));
                    if t == 1 {
                        // Extremes: every activation quant at +-127.
                        for (i, b) in x.iter_mut().enumerate() {
                            if i % 34 >= 2 {
                                *b = if i % 5 == 0 { 0x81 } else { 0x7f };
                            }
                        }
                    }
                    xq.extend(x);
                }
                let q: &[BlockQ8_0] = as_blocks(&xq);
                let tok = |t: usize| &q[t * nb..][..nb];
                let (want, twin, packed_bytes) = if dtype == DType::Q5_0 {
                    lanes_case(
                        &rows,
                        tok,
                        tokens,
                        BlockQ5_0x16::pack,
                        BlockQ5_0x16::unpack,
                        scalar::vec_dot_q5_0_q8_0,
                        scalar::dot_q5_0x16_q8_0,
                    )
                } else {
                    lanes_case(
                        &rows,
                        tok,
                        tokens,
                        BlockQ8_0x16::pack,
                        BlockQ8_0x16::unpack,
                        scalar::vec_dot_q8_0_q8_0,
                        scalar::dot_q8_0x16_q8_0,
                    )
                };
                for t in 0..tokens {
                    for r in 0..16 {
                        assert_eq!(twin[t][r].to_bits(), want[t][r].to_bits(), "{dtype} n={n} scalar twin row {r} token {t}");
                    }
                }
                #[cfg(target_arch = "x86_64")]
                for (tier, k) in [("avx2", &AVX2), ("avx512vnni", &AVX512VNNI)] {
                    if !avx2_available() || (tier == "avx512vnni" && !super::vnni::available()) {
                        continue;
                    }
                    for t in 0..tokens {
                        for r in 0..16 {
                            let v = dot_unchecked(k, dtype, &rows[r], &xq[t * nb * 34..][..nb * 34], n);
                            assert_eq!(
                                v.to_bits(),
                                want[t][r].to_bits(),
                                "{dtype} n={n} {tier} vec_dot row {r} token {t}: {v} vs {}",
                                want[t][r]
                            );
                        }
                    }
                }
                // The interleaved kernels' activations, and a check of their outputs for a range of tokens.
                #[cfg(target_arch = "x86_64")]
                let (mut starts, mut d) = (Vec::new(), Vec::new());
                #[cfg(target_arch = "x86_64")]
                interleaved::lane_starts(q, if dtype == DType::Q5_0 { 16 } else { 128 }, &mut starts, &mut d);
                #[cfg(target_arch = "x86_64")]
                let x = interleaved::QuantizedLanes { q, starts: &starts, d: &d, blocks: nb };
                #[cfg(target_arch = "x86_64")]
                let check = |out: &[[f32; 16]], range: &std::ops::Range<usize>, kernel: &str| {
                    for (i, o) in out.iter().enumerate() {
                        let t = range.start + i;
                        for (r, v) in o.iter().enumerate() {
                            assert_eq!(
                                v.to_bits(),
                                want[t][r].to_bits(),
                                "{dtype} n={n} {kernel} {range:?}: row {r} token {t}: {v} vs {}",
                                want[t][r]
                            );
                        }
                    }
                };
                // AVX2's Q5_0 kernels on the same blocks: directly, and widened (checked against the
                // scalar widening first).
                #[cfg(target_arch = "x86_64")]
                if dtype == DType::Q5_0 && avx2_available() {
                    let packed: &[BlockQ5_0x16] = bytemuck::cast_slice(&packed_bytes);
                    let mut wide = Vec::new();
                    unsafe { interleaved::widen_q5_0x16_avx2(packed, &mut wide) };
                    let scalar_wide: Vec<WideQ5_0x16> = packed.iter().map(WideQ5_0x16::widen).collect();
                    assert_eq!(bytemuck::cast_slice::<_, u8>(&wide), bytemuck::cast_slice::<_, u8>(&scalar_wide), "n={n}: AVX2 widening");
                    for range in [1..tokens, 0..tokens] {
                        let mut out = vec![[f32::NAN; 16]; range.len()];
                        unsafe { interleaved::dot_q5_0x16_avx2(packed, &x, range.clone(), &mut out, &packed_bytes) };
                        check(&out, &range, "AVX2 direct");
                        let mut out = vec![[f32::NAN; 16]; range.len()];
                        unsafe { interleaved::dot_wide_q5_0x16_avx2(&wide, &x, range.clone(), &mut out, &packed_bytes) };
                        check(&out, &range, "AVX2 widened");
                    }
                }
                #[cfg(target_arch = "x86_64")]
                if super::vnni::available() {
                    for range in [1..tokens, 0..tokens] {
                        let mut out = vec![[f32::NAN; 16]; range.len()];
                        unsafe {
                            if dtype == DType::Q5_0 {
                                (AVX512VNNI.q5_0x16.unwrap())(
                                    bytemuck::cast_slice(&packed_bytes),
                                    &x,
                                    range.clone(),
                                    &mut out,
                                    &packed_bytes,
                                );
                            } else {
                                (AVX512VNNI.q8_0x16.unwrap())(
                                    bytemuck::cast_slice(&packed_bytes),
                                    &x,
                                    range.clone(),
                                    &mut out,
                                    &packed_bytes,
                                );
                            }
                        }
                        check(&out, &range, "avx512vnni");
                    }
                }
            }
        }
    }
}

/// `Q6_K` repacked sixteen rows at a time: the blocks give back their rows; the scalar lanes-order
/// [`scalar::vec_dot_q6k_q8k`] is the AVX2 and VNNI `vec_dot` bit for bit; and the interleaved kernel
/// and its scalar twin give each row's bits in both orders ggml uses for `Q6_K` (`Tiled` and `vec_dot`'s
/// lanes), for every token count a pass can have (1 to 6, 7 = 6 + 1, 13) and on the extremes (values 0
/// and 63 with scales −128 and 127, activation quants at ±127).
#[test]
fn interleaved_q6k_kernel_matches_tiled_and_lanes_bit_for_bit() {
    let mut rng = Rng::new(12);
    let bytes = DType::Q6K.type_size();
    for &n in lengths(DType::Q6K) {
        let nb = n / 256;
        let mut rows: Vec<Vec<u8>> = (0..16).map(|_| random_weight_row(DType::Q6K, n, &mut rng)).collect();
        for (r, (q, sc)) in [(0xFFu8, 0x80u8), (0x00, 0x7F)].into_iter().enumerate() {
            for b in rows[r].chunks_mut(bytes) {
                b[..192].fill(q);
                b[192..208].fill(sc);
            }
        }
        let blocks: [&[BlockQ6K]; 16] = std::array::from_fn(|r| as_blocks(&rows[r]));
        let packed: Vec<BlockQ6Kx16> = (0..nb).map(|b| BlockQ6Kx16::pack(blocks, b)).collect();
        for (r, row) in rows.iter().enumerate() {
            let back: Vec<BlockQ6K> = packed.iter().map(|b| b.unpack(r)).collect();
            assert_eq!(bytemuck::cast_slice::<BlockQ6K, u8>(&back), &row[..], "unpack row {r}");
        }
        for tokens in [1, 2, 3, 6, 7, 13] {
            let extremes: Vec<f32> = (0..n).map(|i| if i % 5 == 0 { -1.0 } else { 1.0 }).collect();
            let xq: Vec<u8> = (0..tokens)
                .flat_map(|t| act_row(DType::Q6K, &if t == tokens / 2 { extremes.clone() } else { rng.activations(n) }))
                .collect();
            let q: &[BlockQ8K] = as_blocks(&xq);
            let tok = |t: usize| &q[t * nb..][..nb];
            for tiled in [false, true] {
                let want = |r: usize, t: usize| {
                    if tiled { scalar::dot_q6k_q8k_tiled(blocks[r], tok(t)) } else { scalar::vec_dot_q6k_q8k(blocks[r], tok(t)) }
                };
                for t in 0..tokens {
                    let twin = scalar::dot_q6kx16_q8k(&packed, tok(t), tiled);
                    for (r, v) in twin.iter().enumerate() {
                        assert_eq!(v.to_bits(), want(r, t).to_bits(), "n={n} tiled={tiled} scalar twin row {r} token {t}");
                    }
                }
                let order = if tiled { Accumulation::Tiled } else { Accumulation::Lanes };
                #[cfg(target_arch = "x86_64")]
                for (tier, k) in [("avx2", &AVX2), ("avx512vnni", &AVX512VNNI)] {
                    if !avx2_available() || (tier == "avx512vnni" && !super::vnni::available()) {
                        continue;
                    }
                    for t in 0..tokens {
                        for (r, row) in rows.iter().enumerate() {
                            let v = dot_in_unchecked(k, order, DType::Q6K, row, &xq[t * nb * 292..][..nb * 292], n);
                            assert_eq!(
                                v.to_bits(),
                                want(r, t).to_bits(),
                                "n={n} {tier} {order:?} row {r} token {t}: {v} vs {}",
                                want(r, t)
                            );
                        }
                    }
                }
                #[cfg(target_arch = "x86_64")]
                if let Some(dot) = AVX512VNNI.q6kx16.filter(|_| super::vnni::available()) {
                    for range in [1..tokens, 0..tokens] {
                        let mut out = vec![[f32::NAN; 16]; range.len()];
                        unsafe { dot(&packed, q, nb, range.clone(), tiled, &mut out, bytemuck::cast_slice(&packed)) };
                        for (i, o) in out.iter().enumerate() {
                            let t = range.start + i;
                            for (r, v) in o.iter().enumerate() {
                                assert_eq!(
                                    v.to_bits(),
                                    want(r, t).to_bits(),
                                    "n={n} tiled={tiled} {range:?}: row {r} token {t}: {v} vs {}",
                                    want(r, t)
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
