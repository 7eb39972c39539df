//! The error type of this crate: every public function that can be handed bad lengths, shapes or types
//! returns one of these instead of panicking.

use crate::DType;

/// What went wrong in a tensor operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// The operation has no implementation for this element type.
    #[error("{op} does not support type {dtype}")]
    Unsupported { op: &'static str, dtype: DType },

    /// A row length that is not a whole number of blocks.
    #[error("{n} elements are not a whole number of {dtype} blocks of {block}")]
    NotBlockMultiple { dtype: DType, n: usize, block: usize },

    /// A buffer whose length does not match the shape it is used with.
    #[error("{what}: expected {expected} {unit}, got {got}")]
    Length { what: &'static str, unit: &'static str, expected: usize, got: usize },

    /// A matrix that does not fit in the storage it points into.
    #[error("matrix of {need} bytes at offset {offset} does not fit in storage of {len} bytes")]
    OutOfBounds { need: usize, offset: usize, len: usize },

    /// A row index past the end of a matrix.
    #[error("row {row} is out of range for a matrix of {rows} rows")]
    RowOutOfRange { row: usize, rows: usize },

    /// A size computation that does not fit in `usize`.
    #[error("size of {what} overflows")]
    Overflow { what: &'static str },
}
