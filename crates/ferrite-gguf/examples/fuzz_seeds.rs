//! Write a seed corpus for the `gguf_parse` fuzz target: small, valid GGUF files covering every value
//! type, nested arrays, several tensor types and a custom alignment.
//!
//! `cargo run -p ferrite-gguf --example fuzz_seeds -- fuzz/corpus/gguf_parse`

use ferrite_gguf::write::GgufWriter;
use ferrite_gguf::{Array, Value};
use ferrite_tensor::DType;

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus/gguf_parse".into());
    std::fs::create_dir_all(&dir)?;
    let mut seeds = Vec::new();

    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()))
        .meta("llama.block_count", Value::U32(2))
        .meta("a.i8", Value::I8(-1))
        .meta("a.u16", Value::U16(2))
        .meta("a.i16", Value::I16(-2))
        .meta("a.i32", Value::I32(-3))
        .meta("a.f32", Value::F32(0.5))
        .meta("a.bool", Value::Bool(true))
        .meta("a.u64", Value::U64(5))
        .meta("a.i64", Value::I64(-5))
        .meta("a.f64", Value::F64(0.25))
        .meta("tokenizer.ggml.tokens", Value::Array(Array::String(vec!["<s>".into(), "a".into(), "é".into()])))
        .meta("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0, -1.0, -2.0])))
        .meta("nested", Value::Array(Array::Array(vec![Array::U8(vec![1, 2]), Array::I64(vec![3])])));
    w.tensor("f32", DType::F32, &[4], vec![0; 16]);
    w.tensor("q4", DType::Q4_0, &[32, 2], vec![0; 36]);
    w.tensor("k", DType::Q4K, &[256], vec![0; 144]);
    seeds.push(w.to_bytes());

    let mut w = GgufWriter::new();
    w.meta("general.alignment", Value::U32(64));
    w.tensor("a", DType::F16, &[3, 1, 1, 1], vec![0; 6]).tensor("b", DType::BF16, &[2], vec![0; 4]);
    seeds.push(w.to_bytes());

    seeds.push(GgufWriter::new().to_bytes());

    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(format!("{dir}/seed{i}.gguf"), s)?;
    }
    eprintln!("wrote {} seeds to {dir}", seeds.len());
    Ok(())
}
