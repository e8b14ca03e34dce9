//! Field values from text, as `apk mkpkg --info` reads them, and back:
//! package names, versions (`src/version.c`), dependencies
//! (`apk_dep_parse` in `src/package.c`, `dependency_fromstring` and
//! `dependency_tostring` in `src/apk_adb.c`), character classes
//! (`src/ctype.c`), all of apk-tools 3.0.6.

use crate::adb::{Reader, Val, Writer};
use crate::schema::{DEP_MATCH, DEP_NAME, DEP_VERSION, Scalar};

pub const VERSION_EQUAL: u64 = 1;
pub const VERSION_LESS: u64 = 2;
pub const VERSION_GREATER: u64 = 4;
pub const VERSION_FUZZY: u64 = 8;
pub const VERSION_CONFLICT: u64 = 16;
/// No version constraint.
const DEPMASK_ANY: u64 = VERSION_EQUAL | VERSION_LESS | VERSION_GREATER;
const DEPMASK_CHECKSUM: u64 = VERSION_LESS | VERSION_GREATER;

fn is_package_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"+-._".contains(&c)
}

fn is_dependency_name_char(c: u8) -> bool {
    is_package_name_char(c) || b",:/[]".contains(&c)
}

fn is_comparer(c: u8) -> bool {
    b"<=>~".contains(&c)
}

fn is_tag_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"+,-.:=/[]_".contains(&c)
}

/// `apk_version_validate`: digit{.digit}...{letter}{_suf{#}}...{~hash}{-r#}.
pub fn version_is_valid(v: &[u8]) -> bool {
    #[derive(PartialEq, PartialOrd)]
    enum Token {
        InitialDigit,
        Digit,
        Letter,
        Suffix,
        SuffixNo,
        CommitHash,
        RevisionNo,
    }
    fn digits(v: &[u8]) -> usize {
        v.iter().take_while(|c| c.is_ascii_digit()).count()
    }
    let mut n = digits(v);
    if n == 0 {
        return false;
    }
    let mut token = Token::InitialDigit;
    while n < v.len() {
        let rest = &v[n..];
        match rest[0] {
            b'a'..=b'z' if token <= Token::Digit => {
                token = Token::Letter;
                n += 1;
            }
            b'.' | b'0'..=b'9' => {
                let dot = usize::from(rest[0] == b'.');
                token = match token {
                    Token::InitialDigit | Token::Digit => Token::Digit,
                    Token::Suffix if dot == 0 => Token::SuffixNo,
                    _ => return false,
                };
                let d = digits(&rest[dot..]);
                if d == 0 {
                    return false;
                }
                n += dot + d;
            }
            b'_' if token <= Token::SuffixNo => {
                let len = rest[1..]
                    .iter()
                    .take_while(|c| c.is_ascii_lowercase())
                    .count();
                let suffix = &rest[1..1 + len];
                let known = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"];
                if !known.iter().any(|k| k.as_bytes() == suffix) {
                    return false;
                }
                token = Token::Suffix;
                n += 1 + len;
            }
            b'~' if token < Token::CommitHash => {
                let len = rest[1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
                    .count();
                if len == 0 {
                    return false;
                }
                token = Token::CommitHash;
                n += 1 + len;
            }
            b'-' if token < Token::RevisionNo && rest.starts_with(b"-r") => {
                let d = digits(&rest[2..]);
                if d == 0 {
                    return false;
                }
                token = Token::RevisionNo;
                n += 2 + d;
            }
            _ => return false,
        }
    }
    true
}

/// The version operator's text (`apk_version_op_string`).
fn op_string(op: u64) -> &'static str {
    match op & !VERSION_CONFLICT {
        VERSION_LESS => "<",
        x if x == VERSION_LESS | VERSION_EQUAL => "<=",
        x if x == VERSION_LESS | VERSION_EQUAL | VERSION_FUZZY => "<~",
        x if x == VERSION_EQUAL | VERSION_FUZZY || x == VERSION_FUZZY => "~",
        VERSION_EQUAL => "=",
        x if x == VERSION_GREATER | VERSION_EQUAL => ">=",
        x if x == VERSION_GREATER | VERSION_EQUAL | VERSION_FUZZY => ">~",
        VERSION_GREATER => ">",
        DEPMASK_CHECKSUM => "><",
        DEPMASK_ANY => "",
        _ => "?",
    }
}

/// One dependency: `[!]name[op version]`.
#[derive(Debug, PartialEq)]
pub struct Dependency<'a> {
    pub name: &'a [u8],
    pub version: Option<&'a [u8]>,
    pub op: u64,
}

/// `apk_dep_parse` and `dependency_fromstring`'s checks.
pub fn parse_dependency(spec: &[u8]) -> Result<Dependency<'_>, String> {
    let bad = || format!("invalid dependency {:?}", String::from_utf8_lossy(spec));
    let (mut op, rest) = match spec.strip_prefix(b"!") {
        Some(rest) => (VERSION_CONFLICT, rest),
        None => (0, spec),
    };
    let (name, version) = match rest.iter().position(|&c| is_comparer(c)) {
        Some(at) => {
            let ops = rest[at..].iter().take_while(|&&c| is_comparer(c)).count();
            let version = &rest[at + ops..];
            if version.is_empty() {
                return Err(bad());
            }
            let mut mask = 0;
            for &c in &rest[at..at + ops] {
                mask |= match c {
                    b'<' => VERSION_LESS,
                    b'>' => VERSION_GREATER,
                    b'=' => VERSION_EQUAL,
                    _ => VERSION_FUZZY | VERSION_EQUAL,
                };
            }
            op |= mask;
            (&rest[..at], Some(version))
        }
        None => {
            op |= DEPMASK_ANY;
            (rest, None)
        }
    };
    let checksum = op & DEPMASK_CHECKSUM == DEPMASK_CHECKSUM;
    if !checksum && !version.is_some_and(version_is_valid) {
        return Err(bad());
    }
    if !name.iter().all(|&c| is_dependency_name_char(c)) {
        return Err(bad());
    }
    Ok(Dependency { name, version, op })
}

/// The dependencies of a space (or newline) separated list, in order.
pub fn parse_dependencies(text: &[u8]) -> Result<Vec<Dependency<'_>>, String> {
    text.split(|&c| c == b' ' || c == b'\n')
        .filter(|word| !word.is_empty())
        .map(parse_dependency)
        .collect()
}

/// A dependency object's fields (`dependency_fromstring`).
pub fn write_dependency(w: &mut Writer, dep: &Dependency) -> Val {
    let mut fields = [0; 3];
    fields[DEP_NAME - 1] = w.blob(dep.name);
    if dep.op != DEPMASK_ANY {
        fields[DEP_VERSION - 1] = w.blob(dep.version.unwrap_or_default());
        if dep.op != VERSION_EQUAL {
            fields[DEP_MATCH - 1] = w.int(dep.op);
        }
    }
    w.object(&fields)
}

/// `dependency_tostring`.
pub fn dependency_to_string(r: &Reader, fields: &[Val]) -> Vec<u8> {
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    let Some(name) = r.blob(get(DEP_NAME)) else {
        return Vec::new();
    };
    let op = match r.int(get(DEP_MATCH)) {
        0 => VERSION_EQUAL,
        op => op,
    };
    let conflict: &[u8] = if op & VERSION_CONFLICT != 0 {
        b"!"
    } else {
        b""
    };
    match r.blob(get(DEP_VERSION)) {
        None => [conflict, name].concat(),
        Some(version) => [conflict, name, op_string(op).as_bytes(), version].concat(),
    }
}

/// A scalar from `--info` text (the schema's `fromstring`).
pub fn write_scalar(w: &mut Writer, kind: Scalar, text: &[u8]) -> Result<Val, String> {
    let shown = || String::from_utf8_lossy(text).into_owned();
    match kind {
        Scalar::Name => {
            let ok = text.first().is_some_and(u8::is_ascii_alphanumeric)
                && text.iter().all(|&c| is_package_name_char(c));
            if !ok {
                return Err(format!("invalid package name {:?}", shown()));
            }
            Ok(w.blob(text))
        }
        Scalar::Version => {
            if !version_is_valid(text) {
                return Err(format!("invalid version {:?}", shown()));
            }
            Ok(w.blob(text))
        }
        Scalar::String | Scalar::Multiline => Ok(w.blob(text)),
        Scalar::Hex => {
            let bytes = (text.len() % 2 == 0 && text.len() <= 512)
                .then(|| {
                    text.chunks(2)
                        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                        .collect::<Option<Vec<u8>>>()
                })
                .flatten()
                .ok_or_else(|| format!("invalid hex {:?}", shown()))?;
            Ok(w.blob(&bytes))
        }
        Scalar::Int | Scalar::Time => {
            let n = if text.is_empty() {
                Some(0)
            } else {
                std::str::from_utf8(text)
                    .ok()
                    .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
                    .and_then(|t| t.parse::<u64>().ok())
            };
            n.map(|n| w.int(n))
                .ok_or_else(|| format!("invalid number {:?}", shown()))
        }
        Scalar::Octal | Scalar::Size | Scalar::Xattr => {
            Err(format!("mkapk does not take {kind:?} values from text"))
        }
    }
}

/// `tags_fromstring`: space-separated words of tag characters.
pub fn parse_tags(text: &[u8]) -> Result<Vec<&[u8]>, String> {
    text.split(|&c| c == b' ')
        .filter(|word| !word.is_empty())
        .map(|word| {
            if word.iter().all(|&c| is_tag_char(c)) {
                Ok(word)
            } else {
                Err(format!("invalid tag {:?}", String::from_utf8_lossy(word)))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_apk_validates_them() {
        for ok in [
            "1",
            "0.1.0-r1",
            "1.0.0-r1",
            "2021.06.13~707feaec-r1",
            "26.018.22993~8269c6f",
            "1.2.3_rc1",
            "1.2a_p3-r10",
            "1_alpha_beta2",
        ] {
            assert!(version_is_valid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "r1", "1.", "1..2", "1-1", "1-r", "1a2", "1_foo", "1~", "1~XY", "1-r1-r2",
            "1-r1.2", "1 2", "v1",
        ] {
            assert!(!version_is_valid(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn dependencies_parse_with_their_constraints() {
        let deps = parse_dependencies(b" libc  foo>=1.2\nbar=3-r1 !baz qux<~2 x><abc").unwrap();
        let shown: Vec<_> = deps
            .iter()
            .map(|d| {
                (
                    String::from_utf8_lossy(d.name).into_owned(),
                    d.version.map(|v| String::from_utf8_lossy(v).into_owned()),
                    d.op,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("libc".into(), None, DEPMASK_ANY),
                (
                    "foo".into(),
                    Some("1.2".into()),
                    VERSION_GREATER | VERSION_EQUAL
                ),
                ("bar".into(), Some("3-r1".into()), VERSION_EQUAL),
                ("baz".into(), None, VERSION_CONFLICT | DEPMASK_ANY),
                (
                    "qux".into(),
                    Some("2".into()),
                    VERSION_LESS | VERSION_EQUAL | VERSION_FUZZY
                ),
                ("x".into(), Some("abc".into()), DEPMASK_CHECKSUM),
            ]
        );
        for bad in ["foo>=", "foo>=x.y", "foo=1-r", "fo o?", "foo(>=1)"] {
            assert!(parse_dependency(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn dependencies_print_back() {
        for text in ["libc", "foo>=1.2", "bar=3-r1", "!baz", "qux<~2", "n>1"] {
            let mut w = Writer::default();
            let dep = parse_dependency(text.as_bytes()).unwrap();
            let v = write_dependency(&mut w, &dep);
            let r = Reader { buf: w.bytes() };
            assert_eq!(dependency_to_string(&r, &r.object(v)), text.as_bytes());
        }
    }

    #[test]
    fn scalars_reject_bad_text() {
        let mut w = Writer::default();
        assert!(write_scalar(&mut w, Scalar::Name, b"-x").is_err());
        assert!(write_scalar(&mut w, Scalar::Name, b"a b").is_err());
        assert!(write_scalar(&mut w, Scalar::Name, b"luci-app-ntpgate").is_ok());
        assert!(write_scalar(&mut w, Scalar::Int, b"12x").is_err());
        assert!(write_scalar(&mut w, Scalar::Hex, b"abc").is_err());
        assert!(write_scalar(&mut w, Scalar::Hex, b"zz").is_err());
        assert!(parse_tags(b"openwrt:abiversion=1 a").is_ok());
        assert!(parse_tags(b"a|b").is_err());
    }
}
