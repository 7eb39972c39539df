//! Bookkeeping of the KV pool's blocks: who holds which block, which blocks hold a known prefix, and
//! which of those to evict first.
//!
//! A block is in one of three states:
//! - **used**: referenced by one or more sequences (a shared prefix block has several references);
//! - **cached**: unreferenced, but holding the keys and values of a known token prefix, so a later
//!   sequence starting with the same tokens can take it instead of recomputing; evictable, least recently
//!   released first;
//! - **free**: unreferenced and holding nothing worth keeping.
//!
//! A full block is identified by its 16 tokens and the hash of everything before it (`parent`), so the
//! same tokens after a different prefix never match. Hashes use a per-process random key (a client cannot
//! craft collisions to read another's cache) and a match also compares the tokens and the parent hash
//! exactly. Only blocks whose every position is computed are registered.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;

use ferrite_models::BLOCK_SIZE;

/// A full block's identity: the hash of the prefix before it and its tokens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BlockKey {
    parent: u64,
    tokens: [u32; BLOCK_SIZE],
}

#[derive(Clone, Debug, Default)]
struct BlockMeta {
    refs: u32,
    /// Set while the block is registered as holding a known prefix.
    key: Option<BlockKey>,
    /// The block's position in the eviction order while it is cached.
    lru_tick: Option<u64>,
}

/// Allocation, prefix sharing and eviction of the blocks of one KV pool.
pub struct BlockManager {
    meta: Vec<BlockMeta>,
    /// Blocks holding nothing, handed out front first.
    free: VecDeque<u32>,
    /// Registered full blocks by identity (referenced or not).
    by_key: HashMap<BlockKey, u32>,
    /// Cached (unreferenced, registered) blocks by release tick: the first is evicted first.
    lru: BTreeMap<u64, u32>,
    tick: u64,
    used: usize,
    hasher: RandomState,
}

/// The hash chain of a sequence's full blocks, so later blocks can be registered and looked up.
#[derive(Clone, Debug, Default)]
pub struct BlockHashes(Vec<u64>);

impl BlockHashes {
    fn parent(&self, i: usize) -> u64 {
        if i == 0 { 0 } else { self.0[i - 1] }
    }

    /// Number of full blocks hashed so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl BlockManager {
    pub fn new(n_blocks: usize) -> BlockManager {
        assert!(n_blocks <= u32::MAX as usize, "block ids are u32");
        BlockManager {
            meta: vec![BlockMeta::default(); n_blocks],
            free: (0..n_blocks as u32).collect(),
            by_key: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            used: 0,
            hasher: RandomState::new(),
        }
    }

    pub fn total(&self) -> usize {
        self.meta.len()
    }

    /// Blocks referenced by at least one sequence.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Unreferenced blocks kept for prefix reuse (evictable).
    pub fn cached(&self) -> usize {
        self.lru.len()
    }

    /// Blocks that can be handed out now (free and cached).
    pub fn available(&self) -> usize {
        self.free.len() + self.lru.len()
    }

    fn key(&self, parent: u64, tokens: &[u32]) -> BlockKey {
        BlockKey { parent, tokens: tokens.try_into().expect("a full block of tokens") }
    }

    /// How many leading full blocks of `tokens` (at most `max_blocks`) are registered.
    pub fn peek_prefix(&self, tokens: &[u32], max_blocks: usize) -> usize {
        let mut parent = 0;
        let mut n = 0;
        for chunk in tokens.chunks_exact(BLOCK_SIZE).take(max_blocks) {
            let key = self.key(parent, chunk);
            if !self.by_key.contains_key(&key) {
                break;
            }
            parent = self.hasher.hash_one(&key);
            n += 1;
        }
        n
    }

    /// Take a reference to the first `n_blocks` full blocks of `tokens`, which must be registered
    /// (`peek_prefix` said so): returns their ids and hash chain.
    pub fn acquire_prefix(&mut self, tokens: &[u32], n_blocks: usize) -> (Vec<u32>, BlockHashes) {
        let mut blocks = Vec::with_capacity(n_blocks);
        let mut hashes = BlockHashes::default();
        for (i, chunk) in tokens.chunks_exact(BLOCK_SIZE).take(n_blocks).enumerate() {
            let key = self.key(hashes.parent(i), chunk);
            let b = *self.by_key.get(&key).expect("acquire_prefix of a prefix peek_prefix found");
            self.take_ref(b);
            hashes.0.push(self.hasher.hash_one(&key));
            blocks.push(b);
        }
        (blocks, hashes)
    }

    fn take_ref(&mut self, b: u32) {
        let m = &mut self.meta[b as usize];
        if m.refs == 0 {
            self.used += 1;
            if let Some(t) = m.lru_tick.take() {
                self.lru.remove(&t);
            }
        }
        m.refs += 1;
    }

    /// Add blocks to `table` until it holds `positions` positions. Takes free blocks first, then evicts
    /// cached ones, least recently released first. All or nothing: `false` (and no change) when the pool
    /// has too few.
    pub fn grow(&mut self, table: &mut Vec<u32>, positions: usize) -> bool {
        let need = positions.div_ceil(BLOCK_SIZE).saturating_sub(table.len());
        if need > self.available() {
            return false;
        }
        for _ in 0..need {
            let b = match self.free.pop_front() {
                Some(b) => b,
                None => {
                    let (_, b) = self.lru.pop_first().expect("available() counted it");
                    let m = &mut self.meta[b as usize];
                    m.lru_tick = None;
                    let key = m.key.take().expect("cached blocks are registered");
                    self.by_key.remove(&key);
                    b
                }
            };
            self.take_ref(b);
            table.push(b);
        }
        true
    }

    /// Register the full blocks of `table` whose positions are all computed (`computed` positions of
    /// `tokens`), extending the sequence's hash chain. A block whose identity is already registered to
    /// another block (computed twice concurrently) stays unregistered.
    pub fn commit(&mut self, table: &[u32], hashes: &mut BlockHashes, tokens: &[u32], computed: usize) {
        let full = (computed / BLOCK_SIZE).min(table.len());
        for i in hashes.len()..full {
            let key = self.key(hashes.parent(i), &tokens[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE]);
            hashes.0.push(self.hasher.hash_one(&key));
            let b = table[i];
            if self.meta[b as usize].key.is_some() {
                continue; // a shared prefix block, registered already
            }
            if let Entry::Vacant(e) = self.by_key.entry(key.clone()) {
                e.insert(b);
                self.meta[b as usize].key = Some(key);
            }
        }
    }

    /// Drop one reference to each block of `table`. A block nobody references any more becomes cached
    /// if it is registered, free otherwise. Blocks are released last first, so a sequence's tail is
    /// evicted before its prefix (which other requests are more likely to share).
    pub fn release(&mut self, table: &[u32]) {
        for &b in table.iter().rev() {
            let m = &mut self.meta[b as usize];
            assert!(m.refs > 0, "block {b} released more often than taken");
            m.refs -= 1;
            if m.refs > 0 {
                continue;
            }
            self.used -= 1;
            if m.key.is_some() {
                self.tick += 1;
                m.lru_tick = Some(self.tick);
                self.lru.insert(self.tick, b);
            } else {
                self.free.push_back(b);
            }
        }
    }

    /// References held on block `b` (for tests and assertions).
    pub fn refs(&self, b: u32) -> u32 {
        self.meta[b as usize].refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` full blocks of distinct tokens starting at `from`.
    fn toks(from: u32, n_blocks: usize) -> Vec<u32> {
        (from..from + (n_blocks * BLOCK_SIZE) as u32).collect()
    }

    /// A sequence that computed `tokens` and finished: grow, commit, release.
    fn run(bm: &mut BlockManager, tokens: &[u32]) -> Vec<u32> {
        let mut table = Vec::new();
        assert!(bm.grow(&mut table, tokens.len()));
        bm.commit(&table, &mut BlockHashes::default(), tokens, tokens.len());
        bm.release(&table);
        table
    }

    #[test]
    fn fresh_blocks_come_in_order_and_go_back_to_the_end_of_the_free_list() {
        let mut bm = BlockManager::new(8);
        let mut a = Vec::new();
        assert!(bm.grow(&mut a, 20));
        assert_eq!(a, [0, 1]);
        assert!(bm.grow(&mut a, 33));
        assert_eq!(a, [0, 1, 2]);
        assert_eq!((bm.used(), bm.available()), (3, 5));
        let mut b = Vec::new();
        assert!(!bm.grow(&mut b, 6 * BLOCK_SIZE), "only 5 left: all or nothing");
        assert!(b.is_empty());
        assert_eq!(bm.available(), 5);
        bm.release(&a); // nothing registered: free again, released last first
        assert_eq!((bm.used(), bm.cached(), bm.available()), (0, 0, 8));
        assert!(bm.grow(&mut b, 8 * BLOCK_SIZE));
        assert_eq!(b, [3, 4, 5, 6, 7, 2, 1, 0]);
    }

    #[test]
    fn a_prefix_is_shared_by_reference_and_only_whole_computed_blocks_count() {
        let mut bm = BlockManager::new(10);
        let prompt = toks(1000, 3);
        let mut a = Vec::new();
        let mut ha = BlockHashes::default();
        assert!(bm.grow(&mut a, prompt.len() + 5));
        assert_eq!(a, [0, 1, 2, 3]);
        // Only 40 positions computed: two full blocks registered.
        bm.commit(&a, &mut ha, &prompt, 40);
        assert_eq!(ha.len(), 2);
        assert_eq!(bm.peek_prefix(&prompt, 10), 2);
        bm.commit(&a, &mut ha, &prompt, 48);
        assert_eq!(bm.peek_prefix(&prompt, 10), 3);
        assert_eq!(bm.peek_prefix(&prompt, 1), 1);

        // B shares the first two blocks while A still runs.
        let (b_blocks, hb) = bm.acquire_prefix(&prompt, 2);
        assert_eq!(b_blocks, [0, 1]);
        assert_eq!(hb.len(), 2);
        assert_eq!((bm.refs(0), bm.refs(1), bm.refs(2)), (2, 2, 1));
        let mut b = b_blocks;
        assert!(bm.grow(&mut b, 3 * BLOCK_SIZE));
        assert_eq!(b, [0, 1, 4]);
        assert_eq!(bm.used(), 5);

        // Same tokens after another prefix do not match; another first block does not either.
        let mut other = toks(1000, 3);
        other[0] = 7;
        assert_eq!(bm.peek_prefix(&other, 3), 0);
        let mut shifted = toks(0, 1);
        shifted.extend_from_slice(&prompt);
        assert_eq!(bm.peek_prefix(&shifted, 4), 0);

        bm.release(&a);
        assert_eq!((bm.refs(0), bm.refs(2), bm.refs(3)), (1, 0, 0));
        assert_eq!((bm.used(), bm.cached()), (3, 1), "block 2 cached, block 3 free");
        bm.release(&b);
        assert_eq!((bm.used(), bm.cached(), bm.available()), (0, 3, 10));
    }

    #[test]
    fn cached_blocks_are_evicted_least_recently_released_first_and_tails_before_prefixes() {
        let mut bm = BlockManager::new(6);
        let p = toks(0, 2);
        let q = toks(5000, 2);
        assert_eq!(run(&mut bm, &p), [0, 1]);
        assert_eq!(run(&mut bm, &q), [2, 3]);
        assert_eq!((bm.cached(), bm.available()), (4, 6));
        // Reusing p makes it recent; its blocks leave the cache while referenced.
        let (pb, _) = bm.acquire_prefix(&p, 2);
        assert_eq!(pb, [0, 1]);
        assert_eq!(bm.cached(), 2);
        bm.release(&pb);
        // Eviction order now: q's tail (3), q's head (2), p's tail (1), p's head (0) — after the free 4, 5.
        let mut t = Vec::new();
        assert!(bm.grow(&mut t, 3 * BLOCK_SIZE));
        assert_eq!(t, [4, 5, 3]);
        assert_eq!(bm.peek_prefix(&q, 2), 1, "q's second block was evicted");
        assert_eq!(bm.peek_prefix(&p, 2), 2);
        assert!(bm.grow(&mut t, 5 * BLOCK_SIZE));
        assert_eq!(t, [4, 5, 3, 2, 1]);
        assert_eq!(bm.peek_prefix(&q, 2), 0);
        assert_eq!(bm.peek_prefix(&p, 2), 1);
        assert_eq!((bm.used(), bm.cached(), bm.available()), (5, 1, 1));
    }

    #[test]
    fn a_block_computed_twice_is_registered_once() {
        let mut bm = BlockManager::new(4);
        let p = toks(0, 1);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert!(bm.grow(&mut a, 16) && bm.grow(&mut b, 16));
        bm.commit(&a, &mut BlockHashes::default(), &p, 16);
        bm.commit(&b, &mut BlockHashes::default(), &p, 16);
        bm.release(&a);
        bm.release(&b);
        assert_eq!((bm.cached(), bm.available()), (1, 4), "the duplicate went back to the free list");
        assert_eq!(bm.acquire_prefix(&p, 1).0, [0]);
    }
}
