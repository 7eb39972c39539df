//! Tensors, quantized block formats and the CPU kernels that compute with them.
//!
//! - [`DType`]: the element types GGUF files store, with their block layouts.
//! - [`quant`]: block structs (sizes pinned at compile time), dequantization, activation quantization and
//!   dot products, each with a scalar reference and SIMD paths chosen at run time
//!   ([`quant::kernel_tier`]).
//! - [`ops`]: the dense operations a transformer needs (norms, RoPE, softmax, activations).
//! - [`matmul`](mod@matmul): weight × activation products over a thread pool: [`QMatrix`] (a weight matrix in any
//!   supported format, borrowed from shared storage) and [`matmul()`].
//! - [`gemm`](mod@gemm): dense f32 products (x·Wᵀ, per-head attention) through the `gemm` crate, for
//!   unquantized weights such as an encoder's.
//! - [`vmath`]: vectorized row math for the encoder (e^x, erf GELU, scaled softmax), with scalar twins.
//! - [`TensorError`]: what the fallible functions return.
//!
//! ```
//! use ferrite_tensor::{matmul, DType, QMatrix};
//!
//! // A 2×32 Q8_0 weight matrix: row 0 all 1.0, row 1 all −0.5.
//! let mut data = vec![0u8; 2 * DType::Q8_0.type_size()];
//! let (r0, r1) = data.split_at_mut(DType::Q8_0.type_size());
//! ferrite_tensor::quant::quantize_row(DType::Q8_0, &[1.0; 32], r0).unwrap();
//! ferrite_tensor::quant::quantize_row(DType::Q8_0, &[-0.5; 32], r1).unwrap();
//! let w = QMatrix::from_vec(DType::Q8_0, 2, 32, data).unwrap();
//!
//! // One token of 32 features, all 0.25: y = [8, −4].
//! let mut y = [0.0f32; 2];
//! matmul(&w, &[0.25; 32], 1, &mut y).unwrap();
//! assert!((y[0] - 8.0).abs() < 1e-2 && (y[1] + 4.0).abs() < 1e-2);
//! ```

pub mod cpu;
pub mod dtype;
pub mod error;
pub mod gemm;
pub mod matmul;
pub mod ops;
pub mod par;
pub mod quant;
pub mod vmath;
#[cfg(test)]
mod testutil;

pub use dtype::{DType, QK_K};
pub use error::TensorError;
pub use matmul::{QMatrix, matmul};
