//! A validating reader for GGUF files (versions 2 and 3), the format llama.cpp and most quantized model
//! downloads use.
//!
//! [`GgufFile::open`] maps the file and parses its header, metadata ([`Value`]) and tensor directory
//! ([`TensorInfo`]). Every count, length, offset and size is checked against the bytes that are actually
//! there before it is used, so a truncated, corrupt or hostile file gives a [`GgufError`] that names the
//! problem and where it is, never a panic or an out-of-bounds read. Tensor data is not copied:
//! [`GgufFile::tensor_data`] borrows it from the map and [`GgufFile::storage`] shares the map itself.
//!
//! [`write`] produces GGUF files (tests, fuzz seeds, synthetic models).
//!
//! ```
//! use ferrite_gguf::{GgufFile, Value, write::{GgufWriter}};
//! use ferrite_tensor::DType;
//! let mut w = GgufWriter::new();
//! w.meta("general.architecture", Value::String("llama".into()));
//! w.tensor("t", DType::F32, &[2], vec![0u8; 8]);
//! let gguf = GgufFile::from_bytes(w.to_bytes()).unwrap();
//! assert_eq!(gguf.architecture(), Some("llama"));
//! assert_eq!(gguf.tensor("t").unwrap().dims, vec![2]);
//! ```

mod error;
mod read;
mod value;
pub mod write;

pub use error::GgufError;
pub use read::{GgufFile, TensorInfo};
pub use value::{Array, Value, ValueType};
