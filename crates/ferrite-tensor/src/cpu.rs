//! What the CPU offers and which kernels run on it, for `ferrite info --cpu` and benchmark reports.

/// The instruction-set features Ferrite's kernels care about, each with whether this CPU has it.
pub fn features() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        vec![
            ("sse4.2", has!("sse4.2")),
            ("avx", has!("avx")),
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("f16c", has!("f16c")),
            ("avxvnni", has!("avxvnni")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vl", has!("avx512vl")),
            ("avx512vnni", has!("avx512vnni")),
            ("avx512bf16", has!("avx512bf16")),
        ]
    }
    #[cfg(target_arch = "aarch64")]
    {
        use std::arch::is_aarch64_feature_detected as has;
        vec![("neon", has!("neon")), ("dotprod", has!("dotprod")), ("i8mm", has!("i8mm")), ("fp16", has!("fp16"))]
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

/// One line per kernel family: what runs on this CPU (after any `FERRITE_KERNELS` cap).
pub fn kernels() -> Vec<(&'static str, String)> {
    let tier = crate::quant::kernel_tier();
    vec![
        ("quantized dot products", format!("{tier} (FERRITE_KERNELS=scalar|avx2|avx512vnni caps it)")),
        ("activation quantizers", if tier == "scalar" { "scalar" } else { "avx2" }.to_string()),
        ("repacked at load", repacked()),
        ("attention", attention(tier)),
    ]
}

/// Which weight types are repacked into interleaved blocks ([`crate::matmul::QMatrix::interleave`]).
fn repacked() -> String {
    let k = crate::quant::kernels();
    let types: Vec<&str> = [crate::DType::Q4_0, crate::DType::Q4K, crate::DType::Q5_0, crate::DType::Q8_0, crate::DType::Q6K]
        .into_iter()
        .filter(|&t| crate::quant::has_interleaved(k, t))
        .map(|t| t.name())
        .collect();
    if types.is_empty() {
        "none".into()
    } else {
        format!("{} (16 rows interleaved, when the row count is a multiple of 16)", types.join(", "))
    }
}

/// Which attention kernels run (decided in ferrite-models by the same features).
fn attention(tier: &str) -> String {
    #[cfg(target_arch = "x86_64")]
    if tier != "scalar" && is_x86_feature_detected!("f16c") {
        return "avx2 (f16 rounding with F16C, head dimensions 64..256 in steps of 64)".into();
    }
    let _ = tier;
    if crate::ops::fma_available() { "scalar f32 with FMA".into() } else { "scalar f32 without FMA".into() }
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_agree_with_the_chosen_tier() {
        let f = super::features();
        let has = |n: &str| f.iter().any(|&(name, on)| name == n && on);
        match crate::quant::kernel_tier() {
            "avx2" => assert!(has("avx2") && has("fma") && has("f16c"), "{f:?}"),
            "avx512vnni" => assert!(has("avx2") && has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512vnni"), "{f:?}"),
            _ => {}
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(has("avx2") && has("fma") && has("f16c"), crate::quant::avx2_available());
    }
}
