//! Hierarchical navigable small-world graph (Malkov & Yashunin, 2016) over unit vectors, similarity =
//! dot product (= cosine).
//!
//! Our own rather than a crate: the index must live inside a collection generation (written once,
//! fsynced, renamed — see [`crate::collection`]) and be searched with a filter applied *inside* the
//! traversal, and the Rust crates either need C/C++ (usearch) or tie loading to borrowed lifetimes
//! (hnsw_rs). It is measured against hnswlib on the same vectors (`scripts/bench/rag.py`).
//!
//! Build: nodes are inserted in order with a level drawn from a seeded hash of the node id (so a build is
//! reproducible), linked to `m` neighbours per upper level and `2m` on level 0, chosen by the paper's
//! heuristic (a candidate is kept only if it is closer to the new node than to every neighbour kept so
//! far, which keeps long-range links). Search: greedy descent to level 0, then a best-first search with
//! `ef` candidates; a filter restricts which nodes may be *returned*, not which are walked through.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};

use ferrite_tensor::vmath;

/// A similarity with a total order, for heaps.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then_with(|| other.1.cmp(&self.1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node on levels above 0 (level 0 gets twice as many).
    pub m: usize,
    /// Candidates considered when linking a new node.
    pub ef_construction: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 16, ef_construction: 200 }
    }
}

/// The graph (vectors are kept by the caller and passed in).
#[derive(Clone, Debug, PartialEq)]
pub struct Hnsw {
    dim: usize,
    params: HnswParams,
    /// links[node][level]: neighbour ids.
    links: Vec<Vec<Vec<u32>>>,
    entry: Option<u32>,
}

/// Scratch for one search: a visited mark per node, reset by bumping the epoch.
struct Visited {
    mark: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn new(n: usize) -> Self {
        Visited { mark: vec![0; n], epoch: 0 }
    }
    fn next(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.mark.fill(0);
            self.epoch = 1;
        }
    }
    /// Marks `i`; true if it was not marked yet.
    fn insert(&mut self, i: u32) -> bool {
        let m = &mut self.mark[i as usize];
        if *m == self.epoch {
            false
        } else {
            *m = self.epoch;
            true
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Hnsw {
    /// Build over `n = vectors.len() / dim` vectors, calling `progress(done)` now and then.
    pub fn build(vectors: &[f32], dim: usize, params: HnswParams, progress: &mut dyn FnMut(usize)) -> Hnsw {
        let n = vectors.len() / dim;
        let mut h = Hnsw { dim, params, links: Vec::with_capacity(n), entry: None };
        let mut visited = Visited::new(n);
        for i in 0..n {
            h.insert(vectors, i as u32, &mut visited);
            if i % 1024 == 1023 {
                progress(i + 1);
            }
        }
        progress(n);
        h
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    fn vec<'a>(&self, vectors: &'a [f32], i: u32) -> &'a [f32] {
        &vectors[i as usize * self.dim..][..self.dim]
    }

    fn level_for(&self, i: u32) -> usize {
        // floor(-ln(U) / ln(m)), U uniform in (0, 1] from a hash of the id.
        let u = ((splitmix(i as u64 ^ 0x5eed) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        ((-u.ln()) / (self.params.m.max(2) as f64).ln()).floor().min(16.0) as usize
    }

    fn max_links(&self, level: usize) -> usize {
        if level == 0 { 2 * self.params.m } else { self.params.m }
    }

    fn insert(&mut self, vectors: &[f32], id: u32, visited: &mut Visited) {
        let level = self.level_for(id);
        self.links.push(vec![Vec::new(); level + 1]);
        let Some(entry) = self.entry else {
            self.entry = Some(id);
            return;
        };
        let q = self.vec(vectors, id);
        let top = self.links[entry as usize].len() - 1;
        let mut ep = Scored(vmath::dot(q, self.vec(vectors, entry)), entry);
        for l in (level + 1..=top).rev() {
            ep = self.greedy(vectors, q, ep, l);
        }
        let mut eps = vec![ep];
        for l in (0..=level.min(top)).rev() {
            let cands = self.search_layer(vectors, q, &eps, self.params.ef_construction, l, visited, None);
            let chosen = self.select(vectors, &cands, self.max_links(l));
            self.links[id as usize][l] = chosen.iter().map(|s| s.1).collect();
            for s in &chosen {
                self.link(vectors, s.1, id, s.0, l);
            }
            eps = cands;
        }
        if level > top {
            self.entry = Some(id);
        }
    }

    /// Add `to` to `from`'s links on `level`, re-selecting when there are too many.
    fn link(&mut self, vectors: &[f32], from: u32, to: u32, sim: f32, level: usize) {
        let max = self.max_links(level);
        let links = &self.links[from as usize][level];
        if links.len() < max {
            self.links[from as usize][level].push(to);
            return;
        }
        let base = self.vec(vectors, from);
        let mut cands: Vec<Scored> = links.iter().map(|&n| Scored(vmath::dot(base, self.vec(vectors, n)), n)).collect();
        cands.push(Scored(sim, to));
        cands.sort_by(|a, b| b.cmp(a));
        let chosen = self.select(vectors, &cands, max);
        self.links[from as usize][level] = chosen.iter().map(|s| s.1).collect();
    }

    /// The paper's neighbour heuristic over `cands` sorted best first; pruned candidates fill any room left.
    fn select(&self, vectors: &[f32], cands: &[Scored], max: usize) -> Vec<Scored> {
        let mut kept: Vec<Scored> = Vec::with_capacity(max);
        let mut pruned = Vec::new();
        for &c in cands {
            if kept.len() >= max {
                break;
            }
            let cv = self.vec(vectors, c.1);
            if kept.iter().all(|k| vmath::dot(cv, self.vec(vectors, k.1)) < c.0) {
                kept.push(c);
            } else {
                pruned.push(c);
            }
        }
        for p in pruned {
            if kept.len() >= max {
                break;
            }
            kept.push(p);
        }
        kept
    }

    fn greedy(&self, vectors: &[f32], q: &[f32], mut best: Scored, level: usize) -> Scored {
        loop {
            let mut moved = false;
            for &n in &self.links[best.1 as usize][level] {
                let s = vmath::dot(q, self.vec(vectors, n));
                if s > best.0 {
                    best = Scored(s, n);
                    moved = true;
                }
            }
            if !moved {
                return best;
            }
        }
    }

    /// Best-first search on one level: the best `ef` nodes found (only nodes `allow` accepts are kept in
    /// the results), best first.
    #[allow(clippy::too_many_arguments)]
    fn search_layer(
        &self,
        vectors: &[f32],
        q: &[f32],
        eps: &[Scored],
        ef: usize,
        level: usize,
        visited: &mut Visited,
        allow: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Scored> {
        visited.next();
        let ok = |i: u32| allow.is_none_or(|f| f(i));
        let mut cands: BinaryHeap<Scored> = BinaryHeap::new(); // best first
        let mut results: BinaryHeap<std::cmp::Reverse<Scored>> = BinaryHeap::new(); // worst first
        for &e in eps {
            if visited.insert(e.1) {
                cands.push(e);
                if ok(e.1) {
                    results.push(std::cmp::Reverse(e));
                }
            }
        }
        while let Some(c) = cands.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| c.0 < w.0.0) {
                break;
            }
            for &n in &self.links[c.1 as usize][level] {
                if !visited.insert(n) {
                    continue;
                }
                let s = Scored(vmath::dot(q, self.vec(vectors, n)), n);
                let worst = results.peek().map(|w| w.0.0);
                if results.len() < ef || worst.is_some_and(|w| s.0 > w) {
                    cands.push(s);
                    if ok(n) {
                        results.push(std::cmp::Reverse(s));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
        out.sort_by(|a, b| b.cmp(a));
        out
    }

    /// The `k` most similar nodes to `q` that `allow` accepts (all, without a filter), best first, as
    /// (node, similarity), searching with `ef` (≥ k) candidates.
    pub fn search(&self, vectors: &[f32], q: &[f32], k: usize, ef: usize, allow: Option<&dyn Fn(u32) -> bool>) -> Vec<(u32, f32)> {
        let Some(entry) = self.entry else { return Vec::new() };
        let mut ep = Scored(vmath::dot(q, self.vec(vectors, entry)), entry);
        for l in (1..self.links[entry as usize].len()).rev() {
            ep = self.greedy(vectors, q, ep, l);
        }
        // The visited marks are reused across queries on this thread (a fresh array per query would
        // cost a memset of the whole graph each time).
        thread_local! {
            static VISITED: std::cell::RefCell<Visited> = std::cell::RefCell::new(Visited::new(0));
        }
        let found = VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            if visited.mark.len() < self.links.len() {
                *visited = Visited::new(self.links.len());
            }
            self.search_layer(vectors, q, &[ep], ef.max(k), 0, &mut visited, allow)
        });
        found.into_iter().take(k).map(|s| (s.1, s.0)).collect()
    }

    /// Serialize: a magic line, then little-endian sizes and link lists.
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(b"FERRITE-HNSW-1\n")?;
        for v in [self.dim, self.params.m, self.params.ef_construction, self.links.len()] {
            w.write_all(&(v as u64).to_le_bytes())?;
        }
        w.write_all(&self.entry.map_or(u64::MAX, |e| e as u64).to_le_bytes())?;
        for node in &self.links {
            w.write_all(&[node.len() as u8])?;
            for level in node {
                w.write_all(&(level.len() as u32).to_le_bytes())?;
                for &n in level {
                    w.write_all(&n.to_le_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// Read what [`Hnsw::write`] wrote, checking every id against the node count.
    pub fn read(r: &mut impl Read) -> io::Result<Hnsw> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("HNSW index: {m}"));
        let mut magic = [0u8; 15];
        r.read_exact(&mut magic)?;
        if &magic != b"FERRITE-HNSW-1\n" {
            return Err(bad("bad magic"));
        }
        let mut u64s = [0u64; 5];
        for v in &mut u64s {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            *v = u64::from_le_bytes(b);
        }
        let [dim, m, efc, n, entry] = u64s;
        if n > u32::MAX as u64 || dim == 0 || dim > 1 << 16 {
            return Err(bad("implausible sizes"));
        }
        let n = n as usize;
        let mut links = Vec::with_capacity(n.min(1 << 24));
        for _ in 0..n {
            let mut lv = [0u8; 1];
            r.read_exact(&mut lv)?;
            let mut node = Vec::with_capacity(lv[0] as usize);
            for _ in 0..lv[0] {
                let mut b = [0u8; 4];
                r.read_exact(&mut b)?;
                let len = u32::from_le_bytes(b) as usize;
                if len > 4 * m as usize + 4 {
                    return Err(bad("too many links"));
                }
                let mut ids = Vec::with_capacity(len);
                for _ in 0..len {
                    r.read_exact(&mut b)?;
                    let id = u32::from_le_bytes(b);
                    if id as usize >= n {
                        return Err(bad("link out of range"));
                    }
                    ids.push(id);
                }
                node.push(ids);
            }
            links.push(node);
        }
        let entry = if entry == u64::MAX { None } else { Some(entry as u32) };
        if entry.is_some_and(|e| e as usize >= n) || (entry.is_none() && n > 0) {
            return Err(bad("bad entry point"));
        }
        Ok(Hnsw { dim: dim as usize, params: HnswParams { m: m as usize, ef_construction: efc as usize }, links, entry })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random unit vectors from a seeded generator, with some clustering so the graph is non-trivial.
    /// Queries come from the same clusters (`seed` only changes the noise).
    pub(crate) fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * dim);
        let centers: Vec<f32> =
            (0..32 * dim).map(|i| (splitmix(0xc0ffee ^ (i as u64) << 1) as f64 / u64::MAX as f64 - 0.5) as f32).collect();
        for i in 0..n {
            let c = &centers[(splitmix(seed ^ i as u64) % 32) as usize * dim..][..dim];
            let v: Vec<f32> = (0..dim)
                .map(|j| {
                    c[j] + 0.7
                        * ((splitmix(seed.wrapping_mul(0x1234_5678).wrapping_add((i * dim + j) as u64)) as f64 / u64::MAX as f64 - 0.5)
                            as f32)
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / norm));
        }
        out
    }

    fn exact(vectors: &[f32], dim: usize, q: &[f32], k: usize, allow: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut s: Vec<(f32, u32)> =
            vectors.chunks(dim).enumerate().filter(|(i, _)| allow(*i as u32)).map(|(i, v)| (vmath::dot(q, v), i as u32)).collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        s.into_iter().take(k).map(|x| x.1).collect()
    }

    #[test]
    fn recall_at_10_against_exact_search() {
        let (n, dim) = (4000, 48);
        let v = unit_vectors(n, dim, 1);
        let h = Hnsw::build(&v, dim, HnswParams { m: 16, ef_construction: 100 }, &mut |_| {});
        let queries = unit_vectors(100, dim, 99);
        let mut hit = 0;
        for q in queries.chunks(dim) {
            let want = exact(&v, dim, q, 10, |_| true);
            let got: Vec<u32> = h.search(&v, q, 10, 64, None).into_iter().map(|x| x.0).collect();
            hit += got.iter().filter(|g| want.contains(g)).count();
        }
        let recall = hit as f64 / 1000.0;
        assert!(recall >= 0.95, "recall@10 = {recall}");
    }

    #[test]
    fn filtered_search_returns_only_allowed_nodes() {
        let (n, dim) = (2000, 32);
        let v = unit_vectors(n, dim, 2);
        let h = Hnsw::build(&v, dim, HnswParams::default(), &mut |_| {});
        let q = &unit_vectors(1, dim, 7)[..];
        let allow = |i: u32| i.is_multiple_of(3);
        let got = h.search(&v, q, 10, 100, Some(&allow));
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|(i, _)| i % 3 == 0));
        let want = exact(&v, dim, q, 10, allow);
        assert!(got.iter().filter(|g| want.contains(&g.0)).count() >= 8);
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "best first");
    }

    #[test]
    fn serializes_round_trip_and_rejects_corruption() {
        let v = unit_vectors(300, 16, 3);
        let h = Hnsw::build(&v, 16, HnswParams::default(), &mut |_| {});
        let mut buf = Vec::new();
        h.write(&mut buf).unwrap();
        assert_eq!(Hnsw::read(&mut &buf[..]).unwrap(), h);
        assert!(Hnsw::read(&mut &buf[..buf.len() - 3]).is_err(), "truncated");
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(Hnsw::read(&mut &bad[..]).is_err());
        assert!(Hnsw::build(&[], 16, HnswParams::default(), &mut |_| {}).search(&[], &[0.0; 16], 5, 10, None).is_empty());
    }
}
