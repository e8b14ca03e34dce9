//! A package from a directory, written as `apk mkpkg` of apk-tools 3.0.6
//! writes it (`src/app_mkpkg.c`), value for value and in the same order,
//! so that the output is byte-identical: the info fields, then each
//! directory (root first, then in path order) after its files, the
//! installed size, the unique id, the scripts; then one data block per
//! non-empty file.
//!
//! Differences from `apk mkpkg`, on purpose: every path is owned by
//! root:root (OpenWrt runs mkpkg under fakeroot, so its packages are);
//! no extended attributes are recorded (OpenWrt's payloads have none);
//! symbolic links, hard links and special files are refused rather than
//! recorded (our packages have none, and a refusal is clearer than an
//! untested encoding).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::adb::{self, BLOCK_ADB, BLOCK_DATA, NULL, Val, Writer};
use crate::schema::{self, Kind};
use crate::values;

/// What `apk mkpkg` is given: `--info` fields, `--files`, `--script`s.
pub struct Spec {
    /// `(field, value)` in the order given; a later one replaces an earlier.
    pub info: Vec<(String, String)>,
    pub files: PathBuf,
    /// `(type, script)`, e.g. `("post-install", ...)`.
    pub scripts: Vec<(String, Vec<u8>)>,
    /// Every file's mtime, as `SOURCE_DATE_EPOCH` sets it for mkpkg;
    /// otherwise the file's own.
    pub mtime: Option<u64>,
}

const OWNER: &[u8] = b"root";

/// The uncompressed package stream: `ADB.pckg`, the ADB block, the data
/// blocks.
pub fn package(spec: &Spec) -> Result<Vec<u8>, String> {
    let mut w = Writer::default();
    let info = info_fields(&mut w, &spec.info)?;
    let dirs = scan(&spec.files)?;
    let mut paths = Vec::with_capacity(dirs.len());
    let mut installed_size = 0u64;
    let mut data = Vec::new();
    for (index, dir) in dirs.iter().enumerate() {
        let (path, files) = directory(&mut w, &spec.files, dir, spec.mtime)?;
        paths.push(path);
        for (file_index, file) in files.into_iter().enumerate() {
            installed_size += file.size;
            if file.size > 0 {
                data.push((index as u32 + 1, file_index as u32 + 1, file));
            }
        }
    }
    let mut info = info;
    info[schema::PI_INSTALLED_SIZE - 1] = w.int(installed_size.max(1));
    let hashes = w.blob_unshared(&[0; 20]);
    info[schema::PI_HASHES - 1] = hashes;
    let info = w.object(&info);
    let paths = w.object(&paths);
    let scripts = scripts(&mut w, &spec.scripts)?;
    let root = w.object(&[info, paths, scripts]);
    w.set_root(root);
    // The unique id: SHA-256 of the ADB with the id still zero, cut to
    // SHA-1's length.
    let id = Sha256::digest(w.bytes());
    w.blob_bytes_mut(hashes).copy_from_slice(&id[..20]);

    let mut out = Vec::new();
    out.extend_from_slice(adb::MAGIC);
    out.extend_from_slice(&adb::SCHEMA_PACKAGE.to_le_bytes());
    push_block(&mut out, BLOCK_ADB, &[w.bytes()])?;
    for (path_index, file_index, file) in data {
        let bytes = fs::read(&file.path).map_err(|e| format!("{}: {e}", file.path.display()))?;
        if bytes.len() as u64 != file.size {
            return Err(format!("{}: changed while packing", file.path.display()));
        }
        let header = [path_index.to_le_bytes(), file_index.to_le_bytes()].concat();
        push_block(&mut out, BLOCK_DATA, &[&header, &bytes])?;
    }
    Ok(out)
}

/// `ADBd` and the stream, raw-deflated at level 9 (mkpkg's default).
pub fn deflate(stream: &[u8]) -> Vec<u8> {
    [
        &adb::MAGIC_DEFLATE[..],
        &miniz_oxide::deflate::compress_to_vec(stream, 9),
    ]
    .concat()
}

fn push_block(out: &mut Vec<u8>, kind: u32, parts: &[&[u8]]) -> Result<(), String> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&adb::block_header(kind, len as u64)?);
    for part in parts {
        out.extend_from_slice(part);
    }
    out.resize(out.len() + adb::block_padding(len as u64), 0);
    Ok(())
}

/// The info object's fields from `--info`, written in field order as
/// mkpkg's `assign_fields` does.
fn info_fields(w: &mut Writer, given: &[(String, String)]) -> Result<Vec<Val>, String> {
    let fields = schema::PKGINFO.fields;
    let mut values: Vec<Option<&str>> = vec![None; fields.len()];
    for (name, value) in given {
        let index = schema::PKGINFO.index_of(name);
        if index == 0 || index == schema::PI_INSTALLED_SIZE || name == "file-size" {
            return Err(format!("invalid info field: {name}"));
        }
        values[index - 1] = Some(value);
    }
    for required in ["name", "version"] {
        if values[schema::PKGINFO.index_of(required) - 1].is_none() {
            return Err(format!("required info field '{required}' not provided"));
        }
    }
    let arch = schema::PKGINFO.index_of("arch") - 1;
    if values[arch].is_none() {
        return Err("info field 'arch' not provided (mkpkg would use its own)".into());
    }
    let mut vals = vec![NULL; fields.len()];
    for ((field, value), val) in fields.iter().zip(values).zip(vals.iter_mut()) {
        let Some(value) = value else { continue };
        *val = info_value(w, field.kind, value.as_bytes())
            .map_err(|e| format!("info field '{}': {e}", field.name))?;
    }
    Ok(vals)
}

fn info_value(w: &mut Writer, kind: Kind, text: &[u8]) -> Result<Val, String> {
    match kind {
        Kind::Scalar(s) => values::write_scalar(w, s, text),
        Kind::Array(array) if std::ptr::eq(array, &schema::DEPENDENCIES) => {
            let mut deps = Vec::new();
            for dep in values::parse_dependencies(text)? {
                let val = values::write_dependency(w, &dep);
                deps.push((dep, val));
            }
            // Sorted by name, duplicates dropped (`adb_wa_sort_unique`).
            deps.sort_by(|a, b| a.0.name.cmp(b.0.name));
            deps.dedup_by(|a, b| a.1 == b.1);
            if let Some(pair) = deps.windows(2).find(|p| p[0].0.name == p[1].0.name) {
                return Err(format!(
                    "{} is listed twice with different constraints, which mkapk does not order",
                    String::from_utf8_lossy(pair[0].0.name)
                ));
            }
            let vals: Vec<Val> = deps.into_iter().map(|(_, v)| v).collect();
            Ok(w.object(&vals))
        }
        Kind::Array(array) if std::ptr::eq(array, &schema::STRINGS) => {
            let words = values::parse_tags(text)?;
            let vals: Vec<Val> = words.into_iter().map(|t| w.blob(t)).collect();
            Ok(w.object(&vals))
        }
        _ => Err("not a field mkapk writes from text".into()),
    }
}

/// Every directory under `root`, relative, root ("") first then in byte
/// order (mkpkg: `mkpkg_scan_dirent`, then a sort with strcmp).
fn scan(root: &Path) -> Result<Vec<PathBuf>, String> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        for name in sorted_entries(&root.join(rel))? {
            let path = rel.join(&name);
            let meta = fs::symlink_metadata(root.join(&path))
                .map_err(|e| format!("{}: {e}", root.join(&path).display()))?;
            if meta.is_dir() {
                out.push(path.clone());
                walk(root, &path, out)?;
            }
        }
        Ok(())
    }
    let mut dirs = Vec::new();
    walk(root, Path::new(""), &mut dirs)?;
    dirs.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    dirs.insert(0, PathBuf::new());
    Ok(dirs)
}

fn sorted_entries(dir: &Path) -> Result<Vec<std::ffi::OsString>, String> {
    let read = |e: std::io::Error| format!("{}: {e}", dir.display());
    let mut names = fs::read_dir(dir)
        .map_err(read)?
        .map(|entry| entry.map(|e| e.file_name()).map_err(read))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names)
}

/// A regular file of the package, for its data block.
struct File {
    path: PathBuf,
    size: u64,
}

/// One directory's entry and its files (`mkpkg_process_directory`,
/// `mkpkg_process_dirent`), in the order mkpkg writes their values.
fn directory(
    w: &mut Writer,
    root: &Path,
    dir: &Path,
    mtime: Option<u64>,
) -> Result<(Val, Vec<File>), String> {
    let full = root.join(dir);
    let mut entries = Vec::new();
    let mut files = Vec::new();
    for name in sorted_entries(&full)? {
        let path = full.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(format!(
                "{}: not a regular file or directory, which mkapk does not pack",
                path.display()
            ));
        }
        if meta.nlink() > 1 {
            return Err(format!(
                "{}: hard links are not packed by mkapk",
                path.display()
            ));
        }
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name_val = w.blob(name.as_encoded_bytes());
        let hash = w.blob(&Sha256::digest(&bytes));
        let mtime = w.int(mtime.unwrap_or(meta.mtime().max(0) as u64));
        let size = w.int(bytes.len() as u64);
        let acl = acl(w, meta.permissions().mode() & 0o7777);
        let mut fields = [NULL; 6];
        fields[schema::FI_NAME - 1] = name_val;
        fields[schema::FI_ACL - 1] = acl;
        fields[schema::FI_SIZE - 1] = size;
        fields[schema::FI_MTIME - 1] = mtime;
        fields[schema::FI_HASH - 1] = hash;
        entries.push(w.object(&fields));
        files.push(File {
            path,
            size: bytes.len() as u64,
        });
    }
    let meta = fs::symlink_metadata(&full).map_err(|e| format!("{}: {e}", full.display()))?;
    let name = w.blob(dir.as_os_str().as_encoded_bytes());
    let acl = acl(w, meta.permissions().mode() & 0o7777);
    // Already in name order: the sort mkpkg applies here changes nothing.
    let files_val = w.object(&entries);
    let mut fields = [NULL; 3];
    fields[schema::DI_NAME - 1] = name;
    fields[schema::DI_ACL - 1] = acl;
    fields[schema::DI_FILES - 1] = files_val;
    Ok((w.object(&fields), files))
}

fn acl(w: &mut Writer, mode: u32) -> Val {
    let mode = w.int(mode as u64);
    let user = w.blob(OWNER);
    let group = w.blob(OWNER);
    w.object(&[mode, user, group])
}

/// The scripts object: each script in field order.
fn scripts(w: &mut Writer, given: &[(String, Vec<u8>)]) -> Result<Val, String> {
    let fields = schema::SCRIPTS.fields;
    let mut texts: Vec<Option<&[u8]>> = vec![None; fields.len()];
    for (kind, text) in given {
        match schema::SCRIPTS.index_of(kind) {
            0 => return Err(format!("invalid script type: {kind}")),
            i => texts[i - 1] = Some(text),
        }
    }
    if texts.iter().all(Option::is_none) {
        return Ok(NULL);
    }
    let vals: Vec<Val> = texts
        .into_iter()
        .map(|text| text.map_or(NULL, |t| w.blob(t)))
        .collect();
    Ok(w.object(&vals))
}
