//! Reading a package file: the stream behind its compression
//! (`adb_decompress` in apk-tools 3.0.6's `src/adb_comp.c`), its blocks,
//! and its payload, extracted and checked as `src/extract_v3.c` does:
//! data blocks in path and file order, each file's size and SHA-256 as the
//! metadata says.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

use crate::adb::{self, BLOCK_DATA, Block, Reader, Val};
use crate::schema;

/// Inflated streams are refused beyond this: no package of ours is near.
const MAX_STREAM: usize = 1 << 30;

/// The uncompressed stream of a package file.
pub fn stream(file: &[u8]) -> Result<Vec<u8>, String> {
    let inflate = |data: &[u8]| {
        miniz_oxide::inflate::decompress_to_vec_with_limit(data, MAX_STREAM)
            .map_err(|e| format!("bad deflate stream: {e:?}"))
    };
    match file.get(..4) {
        Some(m) if m == adb::MAGIC => Ok(file.to_vec()),
        Some(m) if m == adb::MAGIC_DEFLATE => inflate(&file[4..]),
        // `ADBc` and a compression spec: algorithm, level.
        Some(b"ADBc") => {
            let stream = file.get(6..).ok_or("truncated compression header")?;
            match file[4] {
                0 => Ok(stream.to_vec()),
                1 => inflate(stream),
                _ => Err("compression not supported by mkapk (zstd?)".into()),
            }
        }
        _ => Err("not an apk v3 package (no ADB header)".into()),
    }
}

/// A package stream's blocks, the ADB block first; the schema must be
/// `pckg`.
pub fn package_blocks(stream: &[u8]) -> Result<Vec<Block<'_>>, String> {
    let header = stream.get(..8).ok_or("truncated file header")?;
    if &header[..4] != adb::MAGIC {
        return Err("not an ADB stream".into());
    }
    let schema = u32::from_le_bytes(header[4..8].try_into().unwrap());
    if schema != adb::SCHEMA_PACKAGE {
        return Err(format!("schema {schema:08X} is not a package (pckg)"));
    }
    adb::blocks(&stream[8..])
}

fn field(values: &[Val], index: usize) -> Val {
    values.get(index).copied().unwrap_or(adb::NULL)
}

/// A relative path from the package, refused if it could leave `dest`.
fn safe_join(dest: &Path, name: &[u8]) -> Result<std::path::PathBuf, String> {
    let text = std::str::from_utf8(name).map_err(|_| "path is not UTF-8".to_string())?;
    let rel = Path::new(text);
    if text.contains('\0') || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("unsafe path {text:?} in the package"));
    }
    Ok(dest.join(rel))
}

/// Writes the payload under `dest` (directories and files with their
/// modes; owners are left to the caller, who reads them from the dump),
/// checking each data block against its file's size and SHA-256.
pub fn extract(stream: &[u8], dest: &Path) -> Result<(), String> {
    let blocks = package_blocks(stream)?;
    if blocks.iter().any(|b| b.kind == adb::BLOCK_SIG) {
        return Err("signed packages are not read by mkapk".into());
    }
    let r = Reader {
        buf: blocks[0].payload,
    };
    let mut data = blocks[1..].iter().filter(|b| b.kind == BLOCK_DATA);
    let root = r.object(r.root());
    let paths = r.object(field(&root, schema::PKG_PATHS));
    let mut dir_modes = Vec::new();
    for (path_index, &path) in paths.iter().enumerate().skip(1) {
        let dir = r.object(path);
        let dir_name = r.blob(field(&dir, schema::DI_NAME)).unwrap_or_default();
        let dir_path = safe_join(dest, dir_name)?;
        fs::create_dir_all(&dir_path).map_err(|e| format!("{}: {e}", dir_path.display()))?;
        let acl = r.object(field(&dir, schema::DI_ACL));
        if !dir_name.is_empty() {
            dir_modes.push((dir_path.clone(), r.int(field(&acl, schema::ACL_MODE))));
        }
        let files = r.object(field(&dir, schema::DI_FILES));
        for (file_index, &file) in files.iter().enumerate().skip(1) {
            let file = r.object(file);
            let name = r.blob(field(&file, schema::FI_NAME)).unwrap_or_default();
            if name.is_empty() || name.contains(&b'/') {
                return Err(format!("bad file name {:?}", String::from_utf8_lossy(name)));
            }
            let target = safe_join(&dir_path, name)?;
            if r.blob(field(&file, schema::FI_TARGET)).is_some() {
                return Err(format!(
                    "{}: links and special files are not extracted by mkapk",
                    target.display()
                ));
            }
            let size = r.int(field(&file, schema::FI_SIZE));
            let hash = r
                .blob(field(&file, schema::FI_HASH))
                .ok_or_else(|| format!("{}: no hash", target.display()))?;
            let bytes: &[u8] = if size == 0 {
                &[]
            } else {
                let block = data
                    .next()
                    .ok_or_else(|| format!("{}: no data block", target.display()))?;
                let (header, bytes) = block
                    .payload
                    .split_at_checked(8)
                    .ok_or("short data block")?;
                let expected = [
                    (path_index as u32).to_le_bytes(),
                    (file_index as u32).to_le_bytes(),
                ]
                .concat();
                if header != expected || bytes.len() as u64 != size {
                    return Err(format!(
                        "{}: the data block does not belong to it (out of order or wrong size)",
                        target.display()
                    ));
                }
                bytes
            };
            if Sha256::digest(bytes)[..] != *hash {
                return Err(format!("{}: SHA-256 does not match", target.display()));
            }
            fs::write(&target, bytes).map_err(|e| format!("{}: {e}", target.display()))?;
            let acl = r.object(field(&file, schema::FI_ACL));
            let mode = r.int(field(&acl, schema::ACL_MODE)) as u32;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("{}: {e}", target.display()))?;
        }
    }
    if data.next().is_some() {
        return Err("a data block belongs to no file".into());
    }
    // Directory modes last, deepest first, so that none blocks a write.
    for (dir, mode) in dir_modes.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode as u32))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}
