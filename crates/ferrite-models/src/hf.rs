//! A Hugging Face model folder: `config.json` next to `model.safetensors` (one file; a sharded
//! checkpoint's `model.safetensors.index.json` is refused with a clear error for now).
//!
//! The safetensors header is parsed by the `safetensors` crate; the data stays in a read-only memory
//! map and each tensor is converted to f32 on request (F32, F16 and BF16 are accepted).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use crate::ModelError;

/// One tensor's place in the file.
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range inside the map.
    start: usize,
    end: usize,
}

/// A model folder opened for loading: its parsed `config.json` and its tensors by name.
pub struct HfFolder {
    pub dir: PathBuf,
    pub config: serde_json::Value,
    map: memmap2::Mmap,
    tensors: HashMap<String, Entry>,
}

impl HfFolder {
    pub fn open(dir: &Path) -> Result<HfFolder, ModelError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| ModelError::Io { path: config_path.clone(), source })?;
        let config =
            serde_json::from_str(&text).map_err(|e| ModelError::BadConfig { path: config_path.clone(), problem: e.to_string() })?;
        let path = dir.join("model.safetensors");
        if !path.exists() && dir.join("model.safetensors.index.json").exists() {
            return Err(ModelError::BadConfig { path, problem: "sharded safetensors checkpoints are not supported yet".into() });
        }
        let file = File::open(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        // SAFETY: read-only map; like every mmap-based loader we rely on the file not being truncated while
        // it is in use.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ModelError::Io { path: path.clone(), source })?;
        let bad = |problem: String| ModelError::BadConfig { path: path.clone(), problem };
        let (header, meta) = SafeTensors::read_metadata(&map).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let base = 8 + header;
        let mut tensors = HashMap::new();
        for (name, info) in meta.tensors() {
            let (start, end) = (base + info.data_offsets.0, base + info.data_offsets.1);
            if start > end || end > map.len() {
                return Err(bad(format!("tensor {name:?} lies outside the file")));
            }
            tensors.insert(name, Entry { dtype: info.dtype, shape: info.shape.clone(), start, end });
        }
        Ok(HfFolder { dir: dir.to_path_buf(), config, map, tensors })
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Tensor `name`, which must have `shape` (PyTorch order: rows first), as f32.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let e = self.tensors.get(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        if e.shape != shape {
            let dims = |s: &[usize]| s.iter().map(|&d| d as u64).collect();
            return Err(ModelError::BadShape { name: name.into(), expected: dims(shape), found: dims(&e.shape) });
        }
        let bytes = &self.map[e.start..e.end];
        let n: usize = shape.iter().product();
        let width = match e.dtype {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            other => {
                return Err(ModelError::BadConfig {
                    path: self.dir.join("model.safetensors"),
                    problem: format!("tensor {name:?} has type {other:?}; F32, F16 or BF16 expected"),
                });
            }
        };
        if bytes.len() != n * width {
            return Err(ModelError::BadConfig {
                path: self.dir.join("model.safetensors"),
                problem: format!("tensor {name:?} holds {} bytes for {n} elements", bytes.len()),
            });
        }
        Ok(match e.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            _ => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        })
    }

    /// A positive integer field of `config.json`.
    pub fn usize(&self, key: &str) -> Result<usize, ModelError> {
        self.config.get(key).and_then(|v| v.as_u64()).and_then(|v| usize::try_from(v).ok()).filter(|&v| v > 0).ok_or_else(|| {
            ModelError::BadConfig { path: self.dir.join("config.json"), problem: format!("{key:?} is missing or not a positive integer") }
        })
    }

    pub fn opt_f64(&self, key: &str) -> Option<f64> {
        self.config.get(key).and_then(|v| v.as_f64())
    }

    pub fn opt_str(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(|v| v.as_str())
    }
}
