//! Qwen2 (Qwen2.5, Qwen2.5-Coder): the LLaMA decoder of [`crate::llama`] with three differences —
//! biases on the Q, K and V projections, NeoX-style RoPE (dimension i pairs with i + head_dim/2), and an
//! output matrix of its own (untied) in the larger models. Everything else, including the forward pass,
//! is LLaMA's, so it is reused rather than restated.

use ferrite_gguf::GgufFile;
use ferrite_tensor::ops::RopeStyle;

use crate::ModelError;
use crate::llama::{Flavor, Llama};

const QWEN2: Flavor = Flavor { rope: RopeStyle::Neox, qkv_bias: true };

/// Load Qwen2 weights (a [`Llama`] with the Qwen2 flavour).
pub fn load(gguf: &GgufFile) -> Result<Llama, ModelError> {
    Llama::load_flavor(gguf, "qwen2", &QWEN2)
}
