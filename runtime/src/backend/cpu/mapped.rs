//! Packed matrices used in place from a mapped engine file.
//!
//! A CPU engine file stores every weight matrix in the storage precision the engine computes from,
//! little endian, each canonical tensor starting at a 64-byte boundary of the file (`payload.rs`).
//! Loading maps the file once and points each packed matrix at its rows in the mapping, so nothing is
//! copied or converted. A fused matrix (`q | k | v`, `gate | up`) is one run of rows per canonical
//! tensor, since those tensors' records lie one after another in the file, not back to back.

use super::matrix::{Dtype, Elems};
use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

/// A read-only mapping of a whole engine file, shared by every matrix that uses it; unmapped when the
/// last of them is dropped.
#[derive(Clone)]
pub struct EngineMap(Arc<Mmap>);

impl EngineMap {
    /// Map `file` read-only and read it in (`MAP_POPULATE`), so that the first forward pass does not
    /// fault the weights in page by page.
    pub fn new(file: &File) -> std::io::Result<EngineMap> {
        // SAFETY: the mapping is only ever read, and Rust requires that the bytes we borrow from it do
        // not change while borrowed. llmforge never writes an engine file in place: `engine_file::save`
        // writes a temporary file and renames it over the old path, so a mapped file (an inode that
        // stays alive while mapped, whatever its path now names) keeps its contents. Another program
        // writing into or truncating an engine file while an engine runs from it is not supported:
        // as with any memory-mapped model file, the engine would then read the new bytes, or be
        // killed by SIGBUS on a page past a truncated end.
        let map = unsafe { MmapOptions::new().populate().map(file)? };
        Ok(EngineMap(Arc::new(map)))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for EngineMap {
    /// The same mapping (two mappings of one file are different storage).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for EngineMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EngineMap({} bytes)", self.0.len())
    }
}

/// One run of a mapped matrix: rows `first_row..first_row + rows`, whose elements are `bytes` of the
/// mapping.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    first_row: usize,
    rows: usize,
    bytes: Range<usize>,
}

/// The element storage of a matrix whose rows lie in a mapped engine file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    map: EngineMap,
    dtype: Dtype,
    cols: usize,
    /// In row order, covering the matrix's rows without gaps.
    runs: Vec<Run>,
}

impl Mapped {
    /// A matrix of `cols` columns whose consecutive runs of rows are the elements at `parts` (byte
    /// ranges of the mapping). `None` where the rows cannot be used in place: a range outside the
    /// mapping, empty or not a whole number of rows, elements not aligned for `dtype` in memory, or
    /// a big-endian host (the file is little endian).
    pub fn new(
        map: &EngineMap,
        dtype: Dtype,
        cols: usize,
        parts: &[Range<usize>],
    ) -> Option<Mapped> {
        if cfg!(target_endian = "big") {
            return None;
        }
        let row_bytes = cols.checked_mul(dtype.width()).filter(|&n| n > 0)?;
        let mut runs = Vec::with_capacity(parts.len());
        let mut first_row = 0;
        for bytes in parts {
            let slice = map.bytes().get(bytes.clone())?;
            if slice.is_empty() || slice.len() % row_bytes != 0 {
                return None;
            }
            let rows = slice.len() / row_bytes;
            // The alignment is checked once here; every row range of a run then casts (see `run`).
            elems(dtype, slice)?;
            runs.push(Run {
                first_row,
                rows,
                bytes: bytes.clone(),
            });
            first_row += rows;
        }
        Some(Mapped {
            map: map.clone(),
            dtype,
            cols,
            runs,
        })
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The rows from `r` up to `end` or the end of the run holding row `r`, whichever comes first:
    /// how many, and their elements. `r` must be a row of the matrix (`r < rows`), as an index.
    pub fn run(&self, r: usize, end: usize) -> (usize, Elems<'_>) {
        let i = self
            .runs
            .partition_point(|run| run.first_row + run.rows <= r);
        let run = &self.runs[i];
        let last = end.min(run.first_row + run.rows);
        let row_bytes = self.cols * self.dtype.width();
        let start = run.bytes.start + (r - run.first_row) * row_bytes;
        let bytes = &self.map.bytes()[start..run.bytes.start + (last - run.first_row) * row_bytes];
        // Cannot fail: `new` checked that the run starts aligned for `dtype`, and whole rows of it
        // keep that alignment (a row is a whole number of elements).
        let elems = match self.dtype {
            Dtype::F32 => Elems::F32(bytemuck::cast_slice(bytes)),
            Dtype::F16 => Elems::F16(bytemuck::cast_slice(bytes)),
            Dtype::Bf16 => Elems::Bf16(bytemuck::cast_slice(bytes)),
        };
        (last - r, elems)
    }
}

/// `bytes` as elements of `dtype`, if aligned for it and a whole number of them.
fn elems(dtype: Dtype, bytes: &[u8]) -> Option<Elems<'_>> {
    Some(match dtype {
        Dtype::F32 => Elems::F32(bytemuck::try_cast_slice(bytes).ok()?),
        Dtype::F16 => Elems::F16(bytemuck::try_cast_slice(bytes).ok()?),
        Dtype::Bf16 => Elems::Bf16(bytemuck::try_cast_slice(bytes).ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::matrix::{Matrix, Store, matmul};
    use crate::backend::cpu::test_data::data;
    use half::{bf16, f16};

    /// The little-endian bytes of `v` in `dtype`.
    fn bytes(dtype: Dtype, v: &[f32]) -> Vec<u8> {
        match dtype {
            Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Dtype::F16 => v
                .iter()
                .flat_map(|x| f16::from_f32(*x).to_le_bytes())
                .collect(),
            Dtype::Bf16 => v
                .iter()
                .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
                .collect(),
        }
    }

    fn owned(dtype: Dtype, v: &[f32]) -> Store {
        match dtype {
            Dtype::F32 => Store::F32(v.to_vec()),
            Dtype::F16 => Store::F16(v.iter().map(|x| f16::from_f32(*x)).collect()),
            Dtype::Bf16 => Store::Bf16(v.iter().map(|x| bf16::from_f32(*x)).collect()),
        }
    }

    #[test]
    fn a_mapped_matrix_computes_what_the_packed_one_does() {
        // Three parts of odd row counts, apart in the file (as a fused q|k|v is), so that the decode
        // chunks and the GEMM blocks both cross from one part into the next.
        let (cols, parts) = (100, [37usize, 5, 22]);
        let rows: usize = parts.iter().sum();
        let w = data(rows * cols, 3);
        let path = std::env::temp_dir().join(format!("llmforge-mapped-{}", std::process::id()));
        for dtype in [Dtype::F32, Dtype::F16, Dtype::Bf16] {
            let (mut file, mut ranges, mut first) = (vec![7u8; 64], Vec::new(), 0);
            for p in parts {
                let b = bytes(dtype, &w[first * cols..(first + p) * cols]);
                ranges.push(file.len()..file.len() + b.len());
                file.extend_from_slice(&b);
                file.extend_from_slice(&[9u8; 64]);
                first += p;
            }
            std::fs::write(&path, &file).expect("write");
            let map = EngineMap::new(&File::open(&path).expect("open")).expect("map");
            let mapped = Matrix {
                rows,
                cols,
                store: Store::Mapped(Mapped::new(&map, dtype, cols, &ranges).expect("aligned")),
            };
            let packed = Matrix {
                rows,
                cols,
                store: owned(dtype, &w),
            };
            assert_eq!(mapped.bytes(), packed.bytes());
            for n in [1, 5] {
                let x = data(n * cols, 11);
                let (mut a, mut b) = (vec![0.0; n * rows], vec![0.0; n * rows]);
                matmul(&mapped, &x, n, None, &mut a, &mut Vec::new());
                matmul(&packed, &x, n, None, &mut b, &mut Vec::new());
                let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "{dtype:?}, {n} tokens");
            }
            let (mut a, mut b) = (vec![0.0; cols], vec![0.0; cols]);
            for r in [0, 36, 37, 41, 42, rows - 1] {
                mapped.row_into(r, &mut a);
                packed.row_into(r, &mut b);
                assert_eq!(a, b, "{dtype:?} row {r}");
            }
            // A misaligned part is refused, for the caller to copy.
            let shifted: Vec<_> = ranges.iter().map(|r| r.start + 1..r.end + 1).collect();
            assert!(Mapped::new(&map, dtype, cols, &shifted).is_none());
        }
        let _ = std::fs::remove_file(path);
    }
}
