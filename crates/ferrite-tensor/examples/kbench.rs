//! Single-thread matrix × vector throughput of one weight format, in weight bytes read per second: a
//! kernel micro-benchmark (not a test), for comparing kernel variants without a whole model.
//!
//!     cargo run --release -p ferrite-tensor --example kbench -- [ROWS] [ITERS] [TYPE] [TOKENS] [COLS]
//!
//! TYPE is q4_0, q5_0, q8_0, q4_k or q6_k (default q4_0); rows have COLS columns (default 2048). 256 rows (about 0.3 MiB of
//! Q4_0) stay in L2, so the kernel's arithmetic sets the pace; 32768 rows or more come from DRAM.
//! TOKENS (default 1) activation rows per product: 1 is decode, 16 or more prompt processing (bytes
//! per second still count the weights once per product). `FERRITE_KERNELS` caps the kernel tier;
//! the matrix is repacked for the interleaved kernels where the CPU has them (`KBENCH_FLAT=1`: not).

use std::time::Instant;

use ferrite_tensor::{DType, QMatrix, matmul, quant};

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let rows: usize = arg(1).map_or(256, |s| s.parse().expect("ROWS: a number"));
    let iters: usize = arg(2).map_or(10_000, |s| s.parse().expect("ITERS: a number"));
    let dtype = match arg(3).as_deref().unwrap_or("q4_0") {
        "q4_0" => DType::Q4_0,
        "q5_0" => DType::Q5_0,
        "q8_0" => DType::Q8_0,
        "q4_k" => DType::Q4K,
        "q6_k" => DType::Q6K,
        other => panic!("unknown TYPE {other}: q4_0, q5_0, q8_0, q4_k or q6_k"),
    };
    let tokens: usize = arg(4).map_or(1, |s| s.parse().expect("TOKENS: a number"));
    let cols: usize = arg(5).map_or(2048, |s| s.parse().expect("COLS: a number"));
    let block_bytes = dtype.type_size();
    // Random quants; the f16 scales (first bytes of a block, last two of Q6_K) set to 0.0079 so every
    // product stays a normal float.
    let scale_at = |o: usize| if dtype == DType::Q6K { o >= block_bytes - 2 } else { o < 4 };
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..rows * cols / dtype.block_size() * block_bytes)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let o = i % block_bytes;
            if scale_at(o) { [0x0f, 0x20][o % 2] } else { state as u8 }
        })
        .collect();
    let bytes = data.len();
    let mut w = QMatrix::from_vec(dtype, rows, cols, data).expect("matrix");
    if std::env::var_os("KBENCH_FLAT").is_none() {
        w.interleave();
    }
    let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 7919) % 100) as f32 / 50.0 - 1.0).collect();
    let mut y = vec![0f32; tokens * rows];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    pool.install(|| {
        matmul(&w, &x, tokens, &mut y).expect("matmul");
        let start = Instant::now();
        for _ in 0..iters {
            matmul(&w, &x, tokens, &mut y).expect("matmul");
        }
        let secs = start.elapsed().as_secs_f64();
        let gbps = (bytes * iters) as f64 / secs / 1e9;
        println!(
            "{dtype} {rows}x{cols} × {tokens} tokens, {} kernels{}: {gbps:.2} GB/s of weights, {:.0} tokens/s",
            quant::kernel_tier(),
            if w.is_interleaved() { ", interleaved" } else { "" },
            (tokens * iters) as f64 / secs
        );
    });
}
