//! Parsing: a bounds-checked cursor over the file's bytes, then the header, metadata and tensor directory.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use ferrite_tensor::DType;

use crate::error::GgufError;
use crate::value::{Array, Value, ValueType};

/// Shared, immutable file bytes (the memory map, or an owned buffer).
pub type Storage = Arc<dyn AsRef<[u8]> + Send + Sync>;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused (real files nest at most once).
const MAX_NESTING: usize = 8;

/// One entry of the tensor directory, validated: `offset..offset+size` lies inside the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (contiguous) one, so a weight matrix of
    /// `rows × cols` has `dims == [cols, rows]`.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file. Cheap to share: the tensor bytes stay in the map.
pub struct GgufFile {
    storage: Storage,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// The memory map behind `storage`, when the file was opened from disk ([`GgufFile::release`]).
    map: Option<Arc<memmap2::Mmap>>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Map `path` and parse it.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap-based loader we rely on the file not being truncated
        // underneath us while it is in use.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?);
        let mut gguf = Self::from_storage(map.clone())?;
        gguf.map = Some(map);
        Ok(gguf)
    }

    /// Parse a file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_storage(Arc::new(bytes))
    }

    /// Parse shared bytes.
    pub fn from_storage(storage: Storage) -> Result<GgufFile, GgufError> {
        let bytes = (*storage).as_ref();
        let mut r = Reader { buf: bytes, pos: 0 };
        let magic: [u8; 4] = r.take(4, "magic")?.try_into().expect("4 bytes");
        if &magic != MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = r.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Each key-value pair needs at least 8 (key length) + 4 (type) + 1 bytes, each tensor at least
        // 8 + 4 + 4 + 8 bytes: a count that cannot fit is refused before anything is allocated.
        r.check_count(n_kv, 13, "metadata count")?;
        r.check_count(n_tensors, 24, "tensor count")?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut meta_index = HashMap::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let ty_at = r.pos as u64;
            let ty = r.u32("value type")?;
            let ty = ValueType::from_u32(ty).ok_or_else(|| GgufError::BadValueType { key: key.clone(), ty, offset: ty_at })?;
            let value = r.value(ty, &key, 0)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey(key));
            }
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => {
                let v = &metadata[i].1;
                let a = v.as_u64().ok_or_else(|| GgufError::WrongType {
                    key: "general.alignment".into(),
                    expected: "integer",
                    found: v.type_name(),
                })?;
                if a == 0 || !a.is_power_of_two() {
                    return Err(GgufError::BadAlignment(a));
                }
                a
            }
        };

        struct RawTensor {
            name: String,
            dims: Vec<u64>,
            ty: u32,
            offset: u64,
        }
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let n_dims = r.u32("tensor dimension count")?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::BadTensor { name, problem: format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)") });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dimension")?);
            }
            let ty = r.u32("tensor type")?;
            let offset = r.u64("tensor offset")?;
            raw.push(RawTensor { name, dims, ty, offset });
        }

        let data_offset = align_up(r.pos as u64, alignment).ok_or(GgufError::BadAlignment(alignment))?;
        // Files without tensors (vocabulary-only files) may end before the padding; others may not.
        let file_len = bytes.len() as u64;
        if !raw.is_empty() && data_offset > file_len {
            return Err(GgufError::Truncated {
                what: "tensor data (alignment padding)".into(),
                offset: r.pos as u64,
                need: data_offset - r.pos as u64,
                have: file_len - r.pos as u64,
            });
        }
        let data_len = file_len.saturating_sub(data_offset);

        let mut tensors = Vec::with_capacity(raw.len());
        let mut tensor_index = HashMap::with_capacity(raw.len());
        for t in raw {
            let bad = |problem: String| GgufError::BadTensor { name: t.name.clone(), problem };
            let dtype = DType::from_id(t.ty).ok_or_else(|| bad(format!("unknown type id {}", t.ty)))?;
            if t.dims.contains(&0) {
                return Err(bad(format!("dimensions {:?} contain a zero", t.dims)));
            }
            let mut n: u64 = 1;
            for &d in &t.dims {
                n = n.checked_mul(d).ok_or_else(|| bad(format!("dimensions {:?} overflow", t.dims)))?;
            }
            if t.dims[0] % dtype.block_size() as u64 != 0 {
                return Err(bad(format!(
                    "first dimension {} is not a multiple of the {} block size {}",
                    t.dims[0],
                    dtype,
                    dtype.block_size()
                )));
            }
            let size = dtype.bytes_for(n).ok_or_else(|| bad(format!("size of {n} {dtype} elements overflows")))?;
            if t.offset % alignment != 0 {
                return Err(bad(format!("data offset {} is not a multiple of the alignment {alignment}", t.offset)));
            }
            let end = t.offset.checked_add(size).filter(|&e| e <= data_len).ok_or_else(|| {
                bad(format!("data {}..{}+{} runs past the end of the file's data section ({} bytes)", t.offset, t.offset, size, data_len))
            })?;
            debug_assert!(end <= data_len);
            if tensor_index.insert(t.name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor(t.name));
            }
            tensors.push(TensorInfo { name: t.name, dims: t.dims, dtype, offset: data_offset + t.offset, size });
        }

        Ok(GgufFile { storage, version, alignment, data_offset, metadata, meta_index, tensors, tensor_index, map: None })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the whole file.
    pub fn file_size(&self) -> u64 {
        (*self.storage).as_ref().len() as u64
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }

    /// A required integer.
    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        self.opt_u64(key)?.ok_or_else(|| GgufError::MissingKey(key.into()))
    }

    /// An optional integer; present with another type is an error.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "non-negative integer", Value::as_u64)
    }

    /// A required number.
    pub fn f64(&self, key: &str) -> Result<f64, GgufError> {
        self.opt_f64(key)?.ok_or_else(|| GgufError::MissingKey(key.into()))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.typed(key, "number", Value::as_f64)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "bool", Value::as_bool)
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "string", Value::as_str)
    }

    pub fn opt_array(&self, key: &str) -> Result<Option<&Array>, GgufError> {
        self.typed(key, "array", Value::as_array)
    }

    fn typed<'a, T>(&'a self, key: &str, expected: &'static str, f: impl Fn(&'a Value) -> Option<T>) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| GgufError::WrongType { key: key.into(), expected, found: v.type_name() }),
        }
    }

    /// The tensor directory, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor of this file (bounds were checked when the file was opened).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        &(*self.storage).as_ref()[info.offset as usize..(info.offset + info.size) as usize]
    }

    /// Lets the OS take back this process's pages of a tensor it has copied (a weight repacked at load):
    /// the pages leave the process's resident set but stay in the page cache, and a later read of the
    /// tensor faults them back in unchanged. Does nothing for a file parsed from memory.
    pub fn release(&self, info: &TensorInfo) {
        self.release_range(info.offset as usize, info.size as usize);
    }

    /// [`release`](Self::release) for `len` bytes from `offset` in the file's data (a tensor's
    /// [`TensorInfo::offset`] and on), for a tensor copied piece by piece. Ranges outside the map are
    /// ignored.
    pub fn release_range(&self, offset: usize, len: usize) {
        #[cfg(unix)]
        if let Some(map) = &self.map {
            // SAFETY: the map is read-only and backed by the file: after MADV_DONTNEED a read faults the
            // same bytes back in, so no live reference sees a change. A failure only leaves pages mapped.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }

    /// The file's bytes, shared, for weights that keep pointing into the map.
    pub fn storage(&self) -> Storage {
        self.storage.clone()
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

/// A cursor that refuses to read past the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated { what: what.into(), offset: self.pos as u64, need: n, have: self.remaining() });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn check_count(&self, count: u64, min_each: u64, what: &str) -> Result<(), GgufError> {
        match count.checked_mul(min_each) {
            Some(need) if need <= self.remaining() => Ok(()),
            _ => Err(GgufError::CountTooLarge { what: what.into(), offset: self.pos as u64, count, have: self.remaining() }),
        }
    }

    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        Ok(self.take(N as u64, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let at = self.pos as u64;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::BadUtf8 { what: what.into(), offset: at })
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value, GgufError> {
        let what = || format!("value of {key:?}");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.arr::<1>(&what())?[0]),
            ValueType::I8 => Value::I8(self.arr::<1>(&what())?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.arr(&what())?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.arr(&what())?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.arr(&what())?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.arr(&what())?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.arr(&what())?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.arr(&what())?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.arr(&what())?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.arr(&what())?)),
            ValueType::Bool => Value::Bool(self.arr::<1>(&what())?[0] != 0),
            ValueType::String => Value::String(self.string(&what())?),
            ValueType::Array => Value::Array(self.array(key, depth)?),
        })
    }

    fn array(&mut self, key: &str, depth: usize) -> Result<Array, GgufError> {
        if depth >= MAX_NESTING {
            return Err(GgufError::NestingTooDeep { key: key.into(), max: MAX_NESTING });
        }
        let what = format!("array {key:?}");
        let ty_at = self.pos as u64;
        let ty = self.u32(&what)?;
        let ty = ValueType::from_u32(ty).ok_or_else(|| GgufError::BadValueType { key: key.into(), ty, offset: ty_at })?;
        let n = self.u64(&what)?;
        self.check_count(n, ty.min_size(), &what)?;
        let n = n as usize;
        // Fixed-size elements are read in one bounds check.
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let size = std::mem::size_of::<$t>();
                let bytes = self.take((n * size) as u64, &what)?;
                Array::$variant(bytes.chunks_exact(size).map(|c| <$t>::from_le_bytes(c.try_into().expect("size"))).collect())
            }};
        }
        Ok(match ty {
            ValueType::U8 => Array::U8(self.take(n as u64, &what)?.to_vec()),
            ValueType::I8 => Array::I8(self.take(n as u64, &what)?.iter().map(|&b| b as i8).collect()),
            ValueType::Bool => Array::Bool(self.take(n as u64, &what)?.iter().map(|&b| b != 0).collect()),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string(&what)?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array(key, depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}
