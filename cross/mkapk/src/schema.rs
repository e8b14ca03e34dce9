//! The package schema (`pckg`) of apk-tools 3.0.6 (`src/apk_adb.h`,
//! `src/apk_adb.c`): the fields of each object in index order (field i is
//! `fields[i - 1]`), their kinds, and how the dump prints them.

use crate::adb::{Reader, Val};
use crate::values;

/// How a scalar is written from text and printed.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Scalar {
    /// Any bytes.
    String,
    /// A package name: alphanumeric first, then `[A-Za-z0-9+._-]`.
    Name,
    /// A version, valid by apk's version grammar.
    Version,
    /// A script: printed as a block.
    Multiline,
    /// Bytes given and printed as hex.
    Hex,
    Int,
    /// Seconds since the epoch.
    Time,
    /// A mode, printed in octal.
    Octal,
    /// A size in bytes.
    Size,
    /// `name\0value`, printed `name=hex(value)`.
    Xattr,
}

#[derive(Clone, Copy)]
pub enum Kind {
    Scalar(Scalar),
    Object(&'static Object),
    Array(&'static Array),
}

pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

/// Prints an object's values (index 0 is the count) as one string.
pub type ToString = fn(&Reader, &[Val]) -> Vec<u8>;

pub struct Object {
    pub fields: &'static [Field],
    /// Objects printed as one string (dependencies).
    pub to_string: Option<ToString>,
}

pub struct Array {
    pub item: Kind,
}

impl Object {
    /// The index of field `name` (`adb_s_field_by_name`), 0 if none.
    pub fn index_of(&self, name: &str) -> usize {
        self.fields
            .iter()
            .position(|f| f.name == name)
            .map_or(0, |i| i + 1)
    }
}

const fn field(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

const fn scalar(name: &'static str, s: Scalar) -> Field {
    field(name, Kind::Scalar(s))
}

pub static DEPENDENCY: Object = Object {
    fields: &[
        scalar("name", Scalar::String),
        scalar("version", Scalar::Version),
        scalar("match", Scalar::Int),
    ],
    to_string: Some(values::dependency_to_string),
};
pub const DEP_NAME: usize = 1;
pub const DEP_VERSION: usize = 2;
pub const DEP_MATCH: usize = 3;

pub static DEPENDENCIES: Array = Array {
    item: Kind::Object(&DEPENDENCY),
};
pub static STRINGS: Array = Array {
    item: Kind::Scalar(Scalar::String),
};
static XATTRS: Array = Array {
    item: Kind::Scalar(Scalar::Xattr),
};

pub static PKGINFO: Object = Object {
    fields: &[
        scalar("name", Scalar::Name),
        scalar("version", Scalar::Version),
        scalar("hashes", Scalar::Hex),
        scalar("description", Scalar::String),
        scalar("arch", Scalar::String),
        scalar("license", Scalar::String),
        scalar("origin", Scalar::String),
        scalar("maintainer", Scalar::String),
        scalar("url", Scalar::String),
        scalar("repo-commit", Scalar::Hex),
        scalar("build-time", Scalar::Time),
        scalar("installed-size", Scalar::Size),
        scalar("file-size", Scalar::Size),
        scalar("provider-priority", Scalar::Int),
        field("depends", Kind::Array(&DEPENDENCIES)),
        field("provides", Kind::Array(&DEPENDENCIES)),
        field("replaces", Kind::Array(&DEPENDENCIES)),
        field("install-if", Kind::Array(&DEPENDENCIES)),
        field("recommends", Kind::Array(&DEPENDENCIES)),
        scalar("layer", Scalar::Int),
        field("tags", Kind::Array(&STRINGS)),
    ],
    to_string: None,
};
pub const PI_HASHES: usize = 3;
pub const PI_INSTALLED_SIZE: usize = 12;

pub static ACL: Object = Object {
    fields: &[
        scalar("mode", Scalar::Octal),
        scalar("user", Scalar::String),
        scalar("group", Scalar::String),
        field("xattrs", Kind::Array(&XATTRS)),
    ],
    to_string: None,
};
pub const ACL_MODE: usize = 1;

pub static FILE: Object = Object {
    fields: &[
        scalar("name", Scalar::String),
        field("acl", Kind::Object(&ACL)),
        scalar("size", Scalar::Int),
        scalar("mtime", Scalar::Time),
        scalar("hash", Scalar::Hex),
        scalar("target", Scalar::Hex),
    ],
    to_string: None,
};
pub const FI_NAME: usize = 1;
pub const FI_ACL: usize = 2;
pub const FI_SIZE: usize = 3;
pub const FI_MTIME: usize = 4;
pub const FI_HASH: usize = 5;
pub const FI_TARGET: usize = 6;

static FILES: Array = Array {
    item: Kind::Object(&FILE),
};

pub static DIR: Object = Object {
    fields: &[
        scalar("name", Scalar::String),
        field("acl", Kind::Object(&ACL)),
        field("files", Kind::Array(&FILES)),
    ],
    to_string: None,
};
pub const DI_NAME: usize = 1;
pub const DI_ACL: usize = 2;
pub const DI_FILES: usize = 3;

static DIRS: Array = Array {
    item: Kind::Object(&DIR),
};

pub static SCRIPTS: Object = Object {
    fields: &[
        scalar("trigger", Scalar::Multiline),
        scalar("pre-install", Scalar::Multiline),
        scalar("post-install", Scalar::Multiline),
        scalar("pre-deinstall", Scalar::Multiline),
        scalar("post-deinstall", Scalar::Multiline),
        scalar("pre-upgrade", Scalar::Multiline),
        scalar("post-upgrade", Scalar::Multiline),
    ],
    to_string: None,
};

pub static PACKAGE: Object = Object {
    fields: &[
        field("info", Kind::Object(&PKGINFO)),
        field("paths", Kind::Array(&DIRS)),
        field("scripts", Kind::Object(&SCRIPTS)),
        field("triggers", Kind::Array(&STRINGS)),
        scalar("replaces-priority", Scalar::Int),
    ],
    to_string: None,
};
pub const PKG_PATHS: usize = 2;
