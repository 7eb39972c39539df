//! Building blocks shared by the architectures: loading named tensors, linear layers, the batch of
//! sequences a forward pass runs over, and attention against each sequence's KV cache.

use ferrite_gguf::GgufFile;
use ferrite_tensor::matmul::{self, QMatrix, TokenSpan};
use ferrite_tensor::ops;
use ferrite_tensor::quant;

use crate::kv::BLOCK_SIZE;
use crate::{KvPool, ModelConfig, ModelError, SeqKv};

pub(crate) use crate::attention::attention;

/// Finds tensors by their GGUF names and checks their shapes, so a missing or misshapen tensor fails
/// with its exact name.
pub(crate) struct Loader<'a> {
    pub gguf: &'a GgufFile,
}

impl Loader<'_> {
    pub fn has(&self, name: &str) -> bool {
        self.gguf.tensor(name).is_some()
    }

    /// A weight matrix of `rows` (output features) × `cols` (input features): GGUF dims `[cols, rows]`.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, ModelError> {
        let t = self.gguf.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        let expected = vec![cols as u64, rows as u64];
        if t.dims != expected {
            return Err(ModelError::BadShape { name: name.into(), expected, found: t.dims.clone() });
        }
        if !t.dtype.is_supported() {
            return Err(ModelError::UnsupportedType { name: name.into(), dtype: t.dtype });
        }
        QMatrix::new(t.dtype, rows, cols, self.gguf.storage(), t.offset as usize)
            .map_err(|source| ModelError::Tensor { name: name.into(), source })
    }

    /// A 1-D tensor of `len` elements, converted to f32 (norm weights, biases).
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.gguf.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        if t.dims != [len as u64] {
            return Err(ModelError::BadShape { name: name.into(), expected: vec![len as u64], found: t.dims.clone() });
        }
        let mut out = vec![0.0; len];
        quant::dequantize_row(t.dtype, self.gguf.tensor_data(t), &mut out)
            .map_err(|source| ModelError::Tensor { name: name.into(), source })?;
        Ok(out)
    }

    /// `{prefix}.weight` and, if `bias`, `{prefix}.bias`; the weight repacked where the CPU has
    /// interleaved kernels for it ([`QMatrix::interleave`]).
    pub fn linear(&self, prefix: &str, rows: usize, cols: usize, bias: bool) -> Result<Linear, ModelError> {
        let name = format!("{prefix}.weight");
        let mut w = self.matrix(&name, rows, cols)?;
        let b = if bias { Some(self.vector(&format!("{prefix}.bias"), rows)?) } else { None };
        self.repack(&name, &mut w);
        Ok(Linear { w, b })
    }

    /// The output head for tied embeddings: the embedding table `name` (already loaded as `embed`) used
    /// as a linear layer, repacked like any other weight; embedding lookups fault back in only the rows
    /// they read.
    pub fn tied_output(&self, name: &str, embed: &QMatrix) -> Linear {
        let mut w = embed.clone();
        self.repack(name, &mut w);
        Linear { w, b: None }
    }

    /// Repacks the tensor `name` (loaded as `w`) for the interleaved kernels where the CPU has them,
    /// releasing the mapped original slice by slice as it goes: products read only the repacked copy,
    /// so the original need not stay resident, and resident memory never holds both copies of more
    /// than a slice.
    fn repack(&self, name: &str, w: &mut QMatrix) {
        let t = self.gguf.tensor(name);
        w.interleave_releasing(&|start, len| {
            if let Some(t) = t {
                self.gguf.release_range(t.offset as usize + start, len);
            }
        });
    }
}

/// y = W·x (+ b) for every row of a batch.
pub(crate) struct Linear {
    pub w: QMatrix,
    pub b: Option<Vec<f32>>,
}

impl Linear {
    /// x: (n, cols) → (n, rows), where the n rows are `spans[0].tokens` rows of the first sequence, then
    /// the second's, … (the kernels pick their accumulation order per sequence: see `matmul_seqs`).
    pub fn forward(&self, x: &[f32], spans: &[TokenSpan]) -> Result<Vec<f32>, ModelError> {
        let n: usize = spans.iter().map(|s| s.tokens).sum();
        let mut y = vec![0.0; n * self.w.rows()];
        matmul::matmul_seqs(&self.w, x, spans, &mut y).map_err(ModelError::Compute)?;
        if let Some(b) = &self.b {
            ops::add_bias(&mut y, b);
        }
        Ok(y)
    }
}

/// Which logits a sequence of the batch wants back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None (a prefill chunk that is not the last).
    None,
    /// Only for its last token (generation).
    Last,
    /// For every token (perplexity, scoring, verifying draft tokens).
    All,
}

/// One sequence's part of a forward pass: its new tokens, its block table (positions continue from
/// `kv.len()`), which logits it wants, and where its tokens sit in the batch that decides their kernels.
pub struct SeqBatch<'a> {
    pub tokens: &'a [u32],
    pub kv: &'a mut SeqKv,
    pub logits: Logits,
    /// `None`: the tokens are a batch of their own. A piece of a prompt says where it sits in the
    /// batch the whole prompt is computed in (`ferrite_engine::prompt_place`), and gets the bits of that
    /// batch: kernels whose arithmetic depends on how many tokens a sequence brings (K-quant
    /// accumulation orders, tiled or per-key attention) decide by the batch, not by the piece.
    pub place: Option<BatchPlace>,
}

/// Where a piece of `n` tokens sits in its batch: tokens `first..first + n` of `size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPlace {
    pub size: usize,
    pub first: usize,
}

impl SeqBatch<'_> {
    /// The sequence's rows as a matmul span.
    fn span(&self) -> TokenSpan {
        let n = self.tokens.len();
        self.place.map_or(TokenSpan::whole(n), |p| TokenSpan { tokens: n, batch: p.size, first: p.first })
    }
}

/// The batch flattened into token rows: row i belongs to sequence `seq[i]` at position `pos[i]`.
pub(crate) struct Step<'a, 'b> {
    pub pool: &'b mut KvPool,
    pub seqs: &'b mut [SeqBatch<'a>],
    pub seq: Vec<usize>,
    pub pos: Vec<usize>,
}

impl<'a, 'b> Step<'a, 'b> {
    pub fn new(pool: &'b mut KvPool, seqs: &'b mut [SeqBatch<'a>], config: &ModelConfig) -> Result<Self, ModelError> {
        if !pool.fits(config) {
            return Err(ModelError::CacheMismatch);
        }
        let (mut seq, mut pos) = (Vec::new(), Vec::new());
        let mut written = Vec::new();
        for (i, s) in seqs.iter().enumerate() {
            let start = s.kv.len();
            let n = s.tokens.len();
            if start + n > s.kv.capacity() {
                return Err(ModelError::ContextFull { have: start, adding: n, capacity: s.kv.capacity() });
            }
            if let Some(&b) = s.kv.blocks.iter().find(|&&b| b as usize >= pool.n_blocks()) {
                return Err(ModelError::BadBlock { block: b, n_blocks: pool.n_blocks() });
            }
            if let Some(&id) = s.tokens.iter().find(|&&t| t as usize >= config.vocab_size) {
                return Err(ModelError::BadToken { id, vocab: config.vocab_size });
            }
            if let Some(p) = s.place.filter(|p| p.first.checked_add(n).is_none_or(|end| end > p.size)) {
                return Err(ModelError::BadPlace { tokens: n, first: p.first, size: p.size });
            }
            if n > 0 {
                written.extend_from_slice(&s.kv.blocks[start / BLOCK_SIZE..=(start + n - 1) / BLOCK_SIZE]);
            }
            seq.extend(std::iter::repeat_n(i, n));
            pos.extend(start..start + n);
        }
        written.sort_unstable();
        if let Some(w) = written.windows(2).find(|w| w[0] == w[1]) {
            return Err(ModelError::SharedBlockWrite { block: w[0] });
        }
        Ok(Step { pool, seqs, seq, pos })
    }

    pub fn n_rows(&self) -> usize {
        self.seq.len()
    }

    /// Each sequence's rows, in batch order, as matmul spans.
    pub fn spans(&self) -> Vec<TokenSpan> {
        self.seqs.iter().map(SeqBatch::span).collect()
    }

    /// How many tokens the batch that decides sequence `s`'s kernels has.
    pub fn batch_size(&self, s: usize) -> usize {
        self.seqs[s].span().batch
    }

    pub fn tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.seqs.iter().flat_map(|s| s.tokens.iter().copied())
    }

    /// The rows whose logits were asked for, in batch order, and each sequence's share of them as a
    /// span: the last row alone, or all its rows in their place.
    pub fn output_rows(&self) -> (Vec<usize>, Vec<TokenSpan>) {
        let mut rows = Vec::new();
        let mut spans = Vec::new();
        let mut start = 0;
        for s in self.seqs.iter() {
            let n = s.tokens.len();
            spans.push(match s.logits {
                Logits::None => TokenSpan::whole(0),
                Logits::Last if n > 0 => {
                    rows.push(start + n - 1);
                    TokenSpan::whole(1)
                }
                Logits::Last => TokenSpan::whole(0),
                Logits::All => {
                    rows.extend(start..start + n);
                    s.span()
                }
            });
            start += n;
        }
        (rows, spans)
    }

    /// Mark the new tokens as cached.
    pub fn finish(self) {
        for s in self.seqs.iter_mut() {
            s.kv.advance(s.tokens.len());
        }
    }
}

/// Look up token embeddings: (n_rows, dim).
pub(crate) fn embed(table: &QMatrix, tokens: impl Iterator<Item = u32>) -> Result<Vec<f32>, ModelError> {
    let dim = table.cols();
    let tokens: Vec<u32> = tokens.collect();
    let mut x = vec![0.0; tokens.len() * dim];
    for (row, &t) in x.chunks_exact_mut(dim).zip(&tokens) {
        matmul::dequantize_rows(table, t as usize, row).map_err(ModelError::Compute)?;
    }
    Ok(x)
}

/// Keep only `rows` of a (n, width) matrix.
pub(crate) fn select_rows(x: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter().flat_map(|&r| &x[r * width..(r + 1) * width]).copied().collect()
}
