//! What `apk adbdump` (apk-tools 3.0.6) prints for a package: the walk of
//! `src/adb_walk_adb.c` over the package schema, with the serializers of
//! `src/serialize_yaml.c` (the default) and `src/serialize_json.c`
//! (`--format json`), numbers as printed without a terminal (no "pretty
//! print").

use crate::adb::{self, BLOCK_ADB, BLOCK_DATA, Reader, Val};
use crate::read;
use crate::schema::{self, Kind, Object, Scalar};

/// The output formats of `apk adbdump --format`.
#[derive(Clone, Copy)]
pub enum Format {
    Yaml,
    Json,
}

/// The dump of a package stream.
pub fn dump(stream: &[u8], format: Format) -> Result<Vec<u8>, String> {
    let blocks = read::package_blocks(stream)?;
    let mut out: Box<dyn Serializer> = match format {
        Format::Yaml => Box::new(Yaml::default()),
        Format::Json => Box::new(Json::default()),
    };
    for block in &blocks {
        match block.kind {
            BLOCK_ADB => {
                let r = Reader { buf: block.payload };
                out.start_object(adb::SCHEMA_PACKAGE);
                out.comment(&format!(
                    "ADB block, size: {}, compat: {}, ver: {}",
                    block.payload.len(),
                    r.compat_version(),
                    r.version()
                ));
                dump_object(&mut *out, &r, &schema::PACKAGE, r.root());
                out.end();
            }
            BLOCK_DATA => out.comment(&format!("data block, size: {}", block.payload.len())),
            _ => return Err("signed packages are not read by mkapk".into()),
        }
    }
    Ok(out.finish())
}

fn dump_object(out: &mut dyn Serializer, r: &Reader, schema: &Object, v: Val) {
    let values = r.object(v);
    if let Some(to_string) = schema.to_string {
        out.string(&to_string(r, &values), false);
        return;
    }
    for (i, &val) in values.iter().enumerate().skip(1) {
        if val == adb::NULL {
            continue;
        }
        if let Some(field) = schema.fields.get(i - 1) {
            dump_item(out, r, Some(field.name), field.kind, val);
        }
    }
}

fn dump_item(out: &mut dyn Serializer, r: &Reader, name: Option<&str>, kind: Kind, v: Val) {
    if v == adb::NULL {
        return;
    }
    if let Some(name) = name {
        out.key(name);
    }
    match kind {
        Kind::Array(array) => {
            let items = r.object(v);
            out.start_array(items.len() - 1);
            for &item in &items[1..] {
                dump_item(out, r, None, array.item, item);
            }
            out.end();
        }
        Kind::Object(object) if object.to_string.is_none() => {
            out.start_object(0);
            dump_object(out, r, object, v);
            out.end();
        }
        Kind::Object(object) => dump_object(out, r, object, v),
        Kind::Scalar(scalar) => match scalar {
            Scalar::Int | Scalar::Time | Scalar::Size => out.numeric(r.int(v), false),
            Scalar::Octal => out.numeric(r.int(v), true),
            Scalar::Hex => out.string(&hex_or_size(r.blob(v)), false),
            Scalar::Xattr => out.string(&xattr_text(r.blob(v)), false),
            Scalar::String | Scalar::Name | Scalar::Version => {
                out.string(r.blob(v).unwrap_or_default(), false)
            }
            Scalar::Multiline => out.string(r.blob(v).unwrap_or_default(), true),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `hexblob_tostring`: hex within apk's 256-byte buffer, else a size.
fn hex_or_size(blob: Option<&[u8]>) -> Vec<u8> {
    match blob {
        None => Vec::new(),
        Some(b) if b.len() * 2 <= 256 => hex(b).into_bytes(),
        Some(b) => format!("({} bytes)", b.len()).into_bytes(),
    }
}

/// `xattr_tostring`: `name=hex(value)`, or `name=(N bytes)` when long.
fn xattr_text(blob: Option<&[u8]>) -> Vec<u8> {
    let Some(b) = blob else { return Vec::new() };
    let Some(nul) = b.iter().position(|&c| c == 0) else {
        return Vec::new();
    };
    let (name, value) = (&b[..nul], &b[nul + 1..]);
    if name.len() + 1 + 2 * value.len() <= 256 {
        [name, b"=", hex(value).as_bytes()].concat()
    } else {
        [name, format!("=({} bytes)", value.len()).as_bytes()].concat()
    }
}

/// apk's serializer interface (`struct apk_serializer_ops`).
trait Serializer {
    fn start_object(&mut self, schema: u32);
    fn start_array(&mut self, items: usize);
    fn end(&mut self);
    fn comment(&mut self, text: &str);
    fn key(&mut self, name: &str);
    fn string(&mut self, value: &[u8], multiline: bool);
    fn numeric(&mut self, value: u64, octal: bool);
    fn finish(self: Box<Self>) -> Vec<u8>;
}

const ARRAY: u8 = 1;

/// `serialize_yaml.c`.
#[derive(Default)]
struct Yaml {
    out: Vec<u8>,
    nest: usize,
    indent: usize,
    line_started: bool,
    key_printed: bool,
    flags: [u8; 32],
}

enum Quote {
    None,
    Single,
    Block,
}

/// `need_quoting`.
fn quoting(b: &[u8], multiline: bool) -> Quote {
    if b.is_empty() {
        return Quote::None;
    }
    if b.len() >= 80 || multiline {
        return Quote::Block;
    }
    let mut style = if b"-?:,[]{}#&*!|>'\"%@`".contains(&b[0]) {
        Quote::Single
    } else {
        Quote::None
    };
    let mut prev = 0u8;
    for &c in b {
        match c {
            b'\r' | b'\n' | b'\'' => return Quote::Block,
            b' ' if prev == b':' => style = Quote::Single,
            b'#' if prev == b' ' => return Quote::Block,
            b'#' => style = Quote::Single,
            _ => {}
        }
        prev = c;
    }
    style
}

impl Yaml {
    fn indent(&mut self, item: bool, continue_line: bool) {
        if !self.line_started {
            self.out.extend(std::iter::repeat_n(b' ', 2 * self.indent));
            if item && self.flags[self.nest] & ARRAY != 0 {
                self.out.extend_from_slice(b"- ");
            }
        } else if self.key_printed && continue_line {
            self.out.push(b' ');
        }
        self.line_started = true;
    }

    fn start_indent(&mut self, flags: u8) {
        if self.nest > 0 {
            self.indent += 1;
        }
        self.nest += 1;
        self.flags[self.nest] = flags;
    }

    fn newline(&mut self) {
        self.out.push(b'\n');
        self.line_started = false;
        self.key_printed = false;
    }
}

impl Serializer for Yaml {
    fn start_object(&mut self, schema: u32) {
        self.indent(true, false);
        self.start_indent(0);
        if schema != 0 {
            self.out
                .extend_from_slice(format!("#%SCHEMA: {schema:08X}").as_bytes());
            self.newline();
        }
    }

    fn start_array(&mut self, items: usize) {
        self.indent(true, true);
        self.out
            .extend_from_slice(format!("# {items} items").as_bytes());
        self.newline();
        self.start_indent(ARRAY);
    }

    fn end(&mut self) {
        if self.line_started {
            self.indent(false, true);
            self.out.extend_from_slice(b"# empty object");
            self.newline();
        }
        self.nest -= 1;
        if self.nest > 0 {
            self.indent -= 1;
        }
    }

    fn comment(&mut self, text: &str) {
        self.indent(false, true);
        self.out.extend_from_slice(b"# ");
        self.out.extend_from_slice(text.as_bytes());
        self.newline();
    }

    fn key(&mut self, name: &str) {
        if self.key_printed {
            self.newline();
        }
        self.indent(true, true);
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b':');
        self.key_printed = true;
    }

    fn string(&mut self, value: &[u8], multiline: bool) {
        self.indent(true, true);
        match quoting(value, multiline) {
            Quote::None => {
                self.out.extend_from_slice(value);
                self.newline();
            }
            Quote::Single => {
                self.out.push(b'\'');
                self.out.extend_from_slice(value);
                self.out.push(b'\'');
                self.newline();
            }
            Quote::Block => {
                self.out.push(b'|');
                self.newline();
                self.indent += 1;
                // Empty lines are skipped (`apk_blob_foreach_token`).
                for line in value.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                    self.indent(false, true);
                    self.out.extend_from_slice(line);
                    self.newline();
                }
                self.indent -= 1;
            }
        }
    }

    fn numeric(&mut self, value: u64, octal: bool) {
        self.indent(true, true);
        // C's "%#o": a leading 0 unless the value is 0.
        let text = match (octal, value) {
            (true, 0) => "0".to_string(),
            (true, v) => format!("0{v:o}"),
            (false, v) => v.to_string(),
        };
        self.out.extend_from_slice(text.as_bytes());
        self.newline();
    }

    fn finish(self: Box<Self>) -> Vec<u8> {
        self.out
    }
}

/// `serialize_json.c`.
#[derive(Default)]
struct Json {
    out: Vec<u8>,
    nest: usize,
    key_printed: bool,
    need_separator: bool,
    need_newline: bool,
    ends: Vec<u8>,
}

impl Json {
    fn indent(&mut self, item: bool) {
        if self.key_printed {
            self.out.push(b' ');
        } else {
            if item && self.need_separator {
                self.out.push(b',');
            }
            if self.need_newline {
                self.out.push(b'\n');
                self.out.extend(std::iter::repeat_n(b' ', 2 * self.nest));
            } else {
                self.out.push(b' ');
            }
        }
        self.key_printed = false;
    }

    fn start_indent(&mut self, open: u8, close: u8) {
        self.out.push(open);
        self.nest += 1;
        self.ends.push(close);
        self.need_separator = false;
        self.need_newline = true;
    }
}

impl Serializer for Json {
    fn start_object(&mut self, _schema: u32) {
        if self.nest > 0 {
            self.indent(true);
        }
        self.start_indent(b'{', b'}');
    }

    fn start_array(&mut self, _items: usize) {
        if self.nest > 0 {
            self.indent(true);
        }
        self.start_indent(b'[', b']');
    }

    fn end(&mut self) {
        self.need_newline = true;
        self.nest -= 1;
        self.indent(false);
        let close = self.ends.pop().expect("end matches a start");
        self.out.push(close);
        self.need_separator = true;
        self.need_newline = false;
        if self.nest == 0 {
            self.out.push(b'\n');
        }
    }

    /// JSON has no comments.
    fn comment(&mut self, _text: &str) {}

    fn key(&mut self, name: &str) {
        self.need_newline = true;
        self.indent(true);
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.key_printed = true;
        self.need_separator = true;
    }

    fn string(&mut self, value: &[u8], _multiline: bool) {
        self.need_newline = true;
        self.indent(true);
        self.out.push(b'"');
        for &c in value {
            match c {
                b'"' => self.out.extend_from_slice(b"\\\""),
                b'\n' => self.out.extend_from_slice(b"\\n"),
                b'\t' => self.out.extend_from_slice(b"\\t"),
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                c => self.out.push(c),
            }
        }
        self.out.push(b'"');
        self.need_separator = true;
    }

    fn numeric(&mut self, value: u64, _octal: bool) {
        self.need_newline = true;
        self.indent(true);
        self.out.extend_from_slice(value.to_string().as_bytes());
        self.need_separator = true;
    }

    fn finish(self: Box<Self>) -> Vec<u8> {
        self.out
    }
}
