//! ADB, the container of apk v3 packages, as apk-tools 3.0.6 writes and
//! reads it (`src/adb.h`, `src/adb.c`).
//!
//! An ADB is a little-endian byte buffer that starts with an 8-byte header
//! (compat version, version, reserved, root value). Values are 32-bit
//! words: the top four bits give the type, the rest an inline integer or
//! the offset of the data in the buffer. Objects and arrays are runs of
//! values whose first word is their length (index 0 counts itself).

use std::collections::HashMap;

/// A 32-bit ADB value word.
pub type Val = u32;

pub const NULL: Val = 0;
const TYPE_MASK: u32 = 0xf000_0000;
const VALUE_MASK: u32 = 0x0fff_ffff;
pub const TYPE_INT: u32 = 0x1000_0000;
pub const TYPE_INT_32: u32 = 0x2000_0000;
pub const TYPE_INT_64: u32 = 0x3000_0000;
pub const TYPE_BLOB_8: u32 = 0x8000_0000;
pub const TYPE_BLOB_16: u32 = 0x9000_0000;
pub const TYPE_BLOB_32: u32 = 0xa000_0000;
pub const TYPE_ARRAY: u32 = 0xd000_0000;
pub const TYPE_OBJECT: u32 = 0xe000_0000;

/// `ADB.` then the schema id: the file header.
pub const MAGIC: &[u8; 4] = b"ADB.";
/// The prefix of a deflated stream (`adb_compress`, no level given).
pub const MAGIC_DEFLATE: &[u8; 4] = b"ADBd";
/// `pckg`: the schema id of a package.
pub const SCHEMA_PACKAGE: u32 = 0x676b_6370;

pub const BLOCK_ADB: u32 = 0;
pub const BLOCK_SIG: u32 = 1;
pub const BLOCK_DATA: u32 = 2;
const BLOCK_EXT: u32 = 3;
const BLOCK_ALIGNMENT: usize = 8;
/// The largest payload a block with the short 4-byte header can carry.
const BLOCK_SHORT_MAX: u64 = 0x3fff_ffff - 4;

/// The ADB header: compat version 0, version 0, and the root value.
const HEADER_LEN: usize = 8;

pub fn val_type(v: Val) -> u32 {
    v & TYPE_MASK
}

fn val_value(v: Val) -> usize {
    (v & VALUE_MASK) as usize
}

/// Builds an ADB as apk-tools' writer does: data is appended aligned, and
/// a blob, integer or object whose bytes were written before (at an
/// offset aligned as now needed) is not written again but shared
/// (`adb_w_data`'s cache). Byte-identical output depends on both.
pub struct Writer {
    buf: Vec<u8>,
    written: HashMap<Vec<u8>, usize>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            buf: vec![0; HEADER_LEN],
            written: HashMap::new(),
        }
    }
}

impl Writer {
    /// Appends `parts` at the next offset aligned to `align` (zero padded).
    fn append(&mut self, parts: &[&[u8]], align: usize) -> usize {
        let padded = self.buf.len().next_multiple_of(align);
        self.buf.resize(padded, 0);
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        padded
    }

    /// The offset of `parts`, written now or shared with an earlier write.
    fn data(&mut self, parts: &[&[u8]], align: usize) -> usize {
        let bytes = parts.concat();
        match self.written.get(&bytes) {
            Some(&offset) if offset % align == 0 => return offset,
            _ => {}
        }
        let offset = self.append(parts, align);
        self.written.insert(bytes, offset);
        offset
    }

    fn blob_with(&mut self, b: &[u8], shared: bool) -> Val {
        let len = b.len();
        let (prefix, kind): (Vec<u8>, u32) = if len > 0xffff {
            ((len as u32).to_le_bytes().to_vec(), TYPE_BLOB_32)
        } else if len > 0xff {
            ((len as u16).to_le_bytes().to_vec(), TYPE_BLOB_16)
        } else if len > 0 {
            (vec![len as u8], TYPE_BLOB_8)
        } else {
            return NULL;
        };
        // The length prefix's own size is the alignment.
        let align = prefix.len();
        let offset = if shared {
            self.data(&[&prefix, b], align)
        } else {
            self.append(&[&prefix, b], align)
        };
        kind | offset as u32
    }

    /// A blob; empty is NULL (`adb_w_blob`).
    pub fn blob(&mut self, b: &[u8]) -> Val {
        self.blob_with(b, true)
    }

    /// A blob written fresh, never shared: one to be overwritten later
    /// (`adb_w_blob_raw`).
    pub fn blob_unshared(&mut self, b: &[u8]) -> Val {
        self.blob_with(b, false)
    }

    /// An integer: inline below 2^28, else 4 or 8 bytes (`adb_w_int`).
    pub fn int(&mut self, v: u64) -> Val {
        if v >= 1 << 32 {
            TYPE_INT_64 | self.data(&[&v.to_le_bytes()], 4) as u32
        } else if v >= 1 << 28 {
            TYPE_INT_32 | self.data(&[&(v as u32).to_le_bytes()], 4) as u32
        } else {
            TYPE_INT | v as u32
        }
    }

    /// An object (or array) of `fields` (field 1 first); trailing NULLs are
    /// dropped and an empty one is NULL (`adb_w_obj`, which mkpkg uses for
    /// arrays too, hence the object type).
    pub fn object(&mut self, fields: &[Val]) -> Val {
        let used = fields.iter().rposition(|&v| v != NULL).map_or(0, |i| i + 1);
        if used == 0 {
            return NULL;
        }
        let mut words = Vec::with_capacity(4 * (used + 1));
        words.extend_from_slice(&(used as u32 + 1).to_le_bytes());
        for v in &fields[..used] {
            words.extend_from_slice(&v.to_le_bytes());
        }
        TYPE_OBJECT | self.data(&[&words], 4) as u32
    }

    pub fn set_root(&mut self, root: Val) {
        self.buf[4..8].copy_from_slice(&root.to_le_bytes());
    }

    /// The bytes of blob `v`, to fill in after the fact.
    pub fn blob_bytes_mut(&mut self, v: Val) -> &mut [u8] {
        let offset = val_value(v);
        assert_eq!(val_type(v), TYPE_BLOB_8, "only short blobs are patched");
        let len = self.buf[offset] as usize;
        &mut self.buf[offset + 1..offset + 1 + len]
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// The block header of `len` payload bytes (`adb_block_init`).
pub fn block_header(kind: u32, len: u64) -> Result<[u8; 4], String> {
    if len > BLOCK_SHORT_MAX {
        return Err(format!(
            "a block of {len} bytes needs the extended header, which mkapk does not write"
        ));
    }
    Ok(((kind << 30) + 4 + len as u32).to_le_bytes())
}

/// Zero bytes that pad a block of `len` payload bytes (4-byte header) to
/// the block alignment.
pub fn block_padding(len: u64) -> usize {
    let raw = 4 + len as usize;
    raw.next_multiple_of(BLOCK_ALIGNMENT) - raw
}

/// An ADB being read. Like apk-tools, a reference out of the buffer reads
/// as NULL, 0 or empty rather than failing.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn at(&self, offset: usize, len: usize) -> Option<&'a [u8]> {
        self.buf.get(offset..offset.checked_add(len)?)
    }

    pub fn compat_version(&self) -> u8 {
        self.buf[0]
    }

    pub fn version(&self) -> u8 {
        self.buf[1]
    }

    pub fn root(&self) -> Val {
        u32::from_le_bytes(self.buf[4..8].try_into().unwrap())
    }

    pub fn int(&self, v: Val) -> u64 {
        let offset = val_value(v);
        match val_type(v) {
            TYPE_INT => offset as u64,
            TYPE_INT_32 => self
                .at(offset, 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()) as u64),
            TYPE_INT_64 => self
                .at(offset, 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap())),
            _ => 0,
        }
    }

    /// The bytes of a blob, None for NULL or anything else.
    pub fn blob(&self, v: Val) -> Option<&'a [u8]> {
        let offset = val_value(v);
        let prefix = match val_type(v) {
            TYPE_BLOB_8 => 1,
            TYPE_BLOB_16 => 2,
            TYPE_BLOB_32 => 4,
            _ => return None,
        };
        let mut len = [0u8; 4];
        len[..prefix].copy_from_slice(self.at(offset, prefix)?);
        self.at(offset + prefix, u32::from_le_bytes(len) as usize)
    }

    /// The values of an object or array, index 0 (the count) included;
    /// `[count]` alone for anything that is not one (`adb_r_obj`).
    pub fn object(&self, v: Val) -> Vec<Val> {
        let empty = vec![1];
        if !matches!(val_type(v), TYPE_ARRAY | TYPE_OBJECT) {
            return empty;
        }
        let offset = val_value(v);
        let Some(count) = self.at(offset, 4) else {
            return empty;
        };
        let count = u32::from_le_bytes(count.try_into().unwrap()) as usize;
        match self.at(offset, count.saturating_mul(4)) {
            Some(words) if count > 0 => words
                .chunks_exact(4)
                .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
                .collect(),
            _ => empty,
        }
    }
}

/// A block of a stream: its type and payload.
pub struct Block<'a> {
    pub kind: u32,
    pub payload: &'a [u8],
}

/// Splits `stream` (the bytes after the 8-byte file header) into blocks,
/// checking their order as `adb_m_process` does: one ADB block, then
/// signature blocks, then data blocks.
pub fn blocks(mut stream: &[u8]) -> Result<Vec<Block<'_>>, String> {
    let mut blocks = Vec::new();
    while !stream.is_empty() {
        let word = stream
            .get(..4)
            .ok_or("truncated block header")?
            .try_into()
            .map(u32::from_le_bytes)
            .unwrap();
        let (kind, header_len, raw_len) = if word >> 30 == BLOCK_EXT {
            let header = stream.get(..16).ok_or("truncated extended block header")?;
            let raw = u64::from_le_bytes(header[8..16].try_into().unwrap());
            (word & 0x3fff_ffff, 16, raw)
        } else {
            (word >> 30, 4, (word & 0x3fff_ffff) as u64)
        };
        let raw_len = usize::try_from(raw_len).map_err(|_| format!("block of {raw_len} bytes"))?;
        if raw_len < header_len {
            return Err(format!("block size {raw_len} is below its header"));
        }
        let padded = raw_len.next_multiple_of(BLOCK_ALIGNMENT);
        if padded > stream.len() {
            return Err(format!(
                "block of {raw_len} bytes, but only {} left: truncated",
                stream.len()
            ));
        }
        let allowed = match blocks.last() {
            None => kind == BLOCK_ADB,
            Some(Block {
                kind: BLOCK_DATA, ..
            }) => kind == BLOCK_DATA,
            Some(_) => kind == BLOCK_SIG || kind == BLOCK_DATA,
        };
        if !allowed {
            return Err(format!(
                "block of type {kind} after {} blocks: out of order",
                blocks.len()
            ));
        }
        blocks.push(Block {
            kind,
            payload: &stream[header_len..raw_len],
        });
        stream = &stream[padded..];
    }
    match blocks.first() {
        None => Err("no ADB block".into()),
        Some(adb) if adb.payload.len() < HEADER_LEN => Err("ADB block too short".into()),
        Some(adb) if adb.payload[0] != 0 => {
            Err(format!("ADB compat version {} is not 0", adb.payload[0]))
        }
        Some(_) => Ok(blocks),
    }
}
