//! The reader against files we write, and against every kind of damage: truncation at every byte,
//! hostile counts and sizes, bad offsets. None may panic; each must name its problem.

use ferrite_gguf::write::GgufWriter;
use ferrite_gguf::{Array, GgufError, GgufFile, Value};
use ferrite_tensor::DType;

fn sample() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()))
        .meta("u8", Value::U8(7))
        .meta("i8", Value::I8(-7))
        .meta("u16", Value::U16(700))
        .meta("i16", Value::I16(-700))
        .meta("u32", Value::U32(70000))
        .meta("i32", Value::I32(-70000))
        .meta("f32", Value::F32(1.5))
        .meta("bool", Value::Bool(true))
        .meta("u64", Value::U64(1 << 40))
        .meta("i64", Value::I64(-(1 << 40)))
        .meta("f64", Value::F64(-2.25))
        .meta("tokens", Value::Array(Array::String(vec!["a".into(), "<s>".into(), "ü".into()])))
        .meta("scores", Value::Array(Array::F32(vec![0.0, -1.0, -2.0])))
        .meta("nested", Value::Array(Array::Array(vec![Array::I32(vec![1, 2]), Array::I32(vec![])])));
    w.tensor("w", DType::F32, &[4, 2], (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect());
    w.tensor("q", DType::Q8_0, &[32, 1], vec![1u8; 34]);
    w
}

#[test]
fn round_trip_every_value_type() {
    let g = GgufFile::from_bytes(sample().to_bytes()).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.architecture(), Some("llama"));
    assert_eq!(g.get("u8"), Some(&Value::U8(7)));
    assert_eq!(g.get("i8"), Some(&Value::I8(-7)));
    assert_eq!(g.get("u16"), Some(&Value::U16(700)));
    assert_eq!(g.get("i16"), Some(&Value::I16(-700)));
    assert_eq!(g.u64("u32").unwrap(), 70000);
    assert_eq!(g.get("i32").unwrap().as_i64(), Some(-70000));
    assert_eq!(g.f64("f32").unwrap(), 1.5);
    assert_eq!(g.opt_bool("bool").unwrap(), Some(true));
    assert_eq!(g.u64("u64").unwrap(), 1 << 40);
    assert_eq!(g.get("i64").unwrap().as_i64(), Some(-(1 << 40)));
    assert_eq!(g.f64("f64").unwrap(), -2.25);
    assert_eq!(g.opt_array("tokens").unwrap().unwrap(), &Array::String(vec!["a".into(), "<s>".into(), "ü".into()]));
    assert_eq!(g.opt_array("nested").unwrap().unwrap().len(), 2);
    assert!(matches!(g.u64("missing"), Err(GgufError::MissingKey(_))));
    assert!(matches!(g.u64("tokens"), Err(GgufError::WrongType { .. })));
    assert!(matches!(g.u64("i32"), Err(GgufError::WrongType { .. })), "negative is not a u64");

    let w = g.tensor("w").unwrap();
    assert_eq!((w.dims.clone(), w.dtype, w.size), (vec![4, 2], DType::F32, 32));
    assert_eq!(w.offset % 32, 0);
    let data = g.tensor_data(w);
    assert_eq!(f32::from_le_bytes(data[28..32].try_into().unwrap()), 7.0);
    let q = g.tensor("q").unwrap();
    assert_eq!(q.offset - w.offset, 32);
    assert_eq!(g.tensor_data(q), &[1u8; 34][..]);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = sample().to_bytes();
    for len in 0..bytes.len() {
        let r = GgufFile::from_bytes(bytes[..len].to_vec());
        assert!(r.is_err(), "truncated to {len} bytes parsed");
    }
}

#[test]
fn every_single_byte_corruption_is_handled() {
    // Flip each header byte to a few hostile values: parsing may succeed (a changed value) or fail, but
    // never panic, and a success must keep every tensor inside the file.
    let bytes = sample().to_bytes();
    let data_start = GgufFile::from_bytes(bytes.clone()).unwrap().data_offset() as usize;
    for i in 0..data_start {
        for v in [0x00u8, 0xff, 0x7f, 0x80, 0x09] {
            let mut b = bytes.clone();
            b[i] = v;
            if let Ok(g) = GgufFile::from_bytes(b) {
                for t in g.tensors() {
                    assert!(t.offset + t.size <= g.file_size());
                    let _ = g.tensor_data(t);
                }
            }
        }
    }
}

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

fn err(bytes: Vec<u8>) -> String {
    GgufFile::from_bytes(bytes).unwrap_err().to_string()
}

#[test]
fn hostile_counts_are_refused_before_allocating() {
    assert!(err(header(0, u64::MAX)).contains("metadata count"));
    assert!(err(header(u64::MAX / 2, 0)).contains("tensor count"));
    // An array claiming 2^60 strings.
    let mut b = header(0, 1);
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b'k');
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let e = err(b);
    assert!(e.contains("array \"k\"") && e.contains("cannot fit"), "{e}");
    // A string claiming u64::MAX bytes.
    let mut b = header(0, 1);
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(&[0; 16]);
    assert!(err(b).contains("truncated"));
}

#[test]
fn bad_magic_version_and_types() {
    assert!(matches!(GgufFile::from_bytes(b"GGML\0\0\0\0".to_vec()), Err(GgufError::BadMagic(_))));
    let mut b = header(0, 0);
    b[4] = 1;
    assert!(matches!(GgufFile::from_bytes(b), Err(GgufError::UnsupportedVersion(1))));
    let mut b = header(0, 1);
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b'k');
    b.extend_from_slice(&13u32.to_le_bytes());
    assert!(matches!(GgufFile::from_bytes(b), Err(GgufError::BadValueType { ty: 13, .. })));
    // Version 2 has the same layout and is accepted.
    let mut b = header(0, 0);
    b[4] = 2;
    assert_eq!(GgufFile::from_bytes(b).unwrap().version(), 2);
}

#[test]
fn tensor_validation() {
    let bad = |dtype: DType, dims: &[u64], data: usize| {
        let mut w = GgufWriter::new();
        w.tensor("t", dtype, dims, vec![0; data]);
        let mut b = w.to_bytes();
        b.truncate(b.len() - 1); // the last byte of the data is missing
        err(b)
    };
    assert!(bad(DType::F32, &[4], 16).contains("runs past the end"));
    let mut w = GgufWriter::new();
    w.tensor("t", DType::Q4_0, &[16], vec![0; 9]);
    assert!(err(w.to_bytes()).contains("not a multiple of the Q4_0 block size 32"));
    let mut w = GgufWriter::new();
    w.tensor("t", DType::F32, &[u64::MAX, 2], vec![]);
    assert!(err(w.to_bytes()).contains("overflow"));
    let mut w = GgufWriter::new();
    w.tensor("t", DType::F32, &[1], vec![0; 4]).tensor("t", DType::F32, &[1], vec![0; 4]);
    assert!(matches!(GgufFile::from_bytes(w.to_bytes()), Err(GgufError::DuplicateTensor(_))));
    let mut w = GgufWriter::new();
    w.meta("general.alignment", Value::U32(3));
    assert!(matches!(GgufFile::from_bytes(w.to_bytes()), Err(GgufError::BadAlignment(3))));
    // Unknown type id 4 (Q4_2, removed).
    let mut b = header(1, 0);
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b't');
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&32u64.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.resize(128, 0);
    assert!(err(b).contains("unknown type id 4"));
}

/// Found by the fuzzer: a zero-sized tensor in a file that ends before its data section used to pass
/// validation with an offset past the end of the file.
#[test]
fn regression_fuzz_empty_tensor_past_end() {
    let mut b = header(1, 0);
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b't');
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // a zero dimension
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    assert!(err(b.clone()).contains("truncated"), "{}", err(b.clone()));
    b.resize(64, 0);
    assert!(err(b).contains("contain a zero"));
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = GgufWriter::new();
    w.meta("general.alignment", Value::U32(64));
    w.tensor("a", DType::F32, &[1], vec![0; 4]).tensor("b", DType::F32, &[1], vec![1; 4]);
    let g = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.data_offset() % 64, 0);
    assert_eq!(g.tensor("b").unwrap().offset - g.tensor("a").unwrap().offset, 64);
    assert_eq!(g.tensor_data(g.tensor("b").unwrap()), &[1u8; 4][..]);
}
