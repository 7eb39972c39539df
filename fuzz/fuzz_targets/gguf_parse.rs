//! Any byte string given to the GGUF reader must yield a file or an error — never a panic, an abort or a
//! read outside the input. On success every tensor's data must lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = ferrite_gguf::GgufFile::from_bytes(data.to_vec()) {
        for t in g.tensors() {
            assert!(t.offset + t.size <= data.len() as u64);
            let _ = g.tensor_data(t);
        }
        for (_, v) in g.metadata() {
            let _ = v.to_string();
        }
    }
});
