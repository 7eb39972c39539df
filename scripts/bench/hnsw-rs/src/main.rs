// hnsw_rs with DistCosine (its DistDot asserts 1 - dot >= 0 and panics on unit vectors whose dot rounds
// above 1). Same protocol as `ferrite rag ann-bench`: first 1000 vectors are queries, M=16, ef_construction=200,
// single-threaded insert and search, recall@10 vs exact dot-product top-10.
use hnsw_rs::anndists::dist::DistCosine;
use hnsw_rs::prelude::*;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bytes = std::fs::read(&args[1]).unwrap();
    let dim = 384;
    let all: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let hold = 1000;
    let (q, base) = all.split_at(hold * dim);
    let n = base.len() / dim;
    let t = Instant::now();
    let h = Hnsw::<f32, DistCosine>::new(16, n, 16, 200, DistCosine {});
    for i in 0..n {
        h.insert_slice((&base[i * dim..(i + 1) * dim], i));
    }
    let build = t.elapsed().as_secs_f64();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let truth: Vec<Vec<usize>> = q
        .chunks(dim)
        .map(|qq| {
            let mut s: Vec<(f32, usize)> = base.chunks(dim).enumerate().map(|(i, v)| (dot(qq, v), i)).collect();
            s.sort_by(|a, b| b.0.total_cmp(&a.0));
            s.iter().take(10).map(|x| x.1).collect()
        })
        .collect();
    print!("{{\"build_s\":{build},\"runs\":[");
    for (j, ef) in [10usize, 20, 40, 80, 160].iter().enumerate() {
        let t = Instant::now();
        let found: Vec<Vec<usize>> = q.chunks(dim).map(|qq| h.search(qq, 10, *ef).iter().map(|n| n.d_id).collect()).collect();
        let dt = t.elapsed().as_secs_f64();
        let hits: usize = found.iter().zip(&truth).map(|(f, t)| f.iter().filter(|x| t.contains(x)).count()).sum();
        print!("{}{{\"ef\":{ef},\"recall@10\":{},\"qps\":{}}}", if j > 0 { "," } else { "" }, hits as f64 / (10 * hold) as f64, hold as f64 / dt);
    }
    println!("]}}");
}
