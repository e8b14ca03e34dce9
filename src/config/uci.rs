//! OpenWrt's UCI file syntax, as libuci reads it (uci/file.c):
//!
//! ```text
//! package ntpgate                 # optional
//! config server 'main'            # type and optional name
//!     option port '123'           # one value
//!     list listen '::'            # a list grows one value per line
//! ```
//!
//! Values may be bare words, 'single quoted' (taken literally) or "double
//! quoted" (backslash takes the next character literally); adjacent pieces
//! join into one word ('a'"b"c is abc), quotes may span lines, and a
//! backslash at the end of a line continues the statement on the next one.
//! `#` outside quotes starts a comment and `;` ends a statement. Section and
//! option names are letters, digits and underscores; a section type is any
//! printable ASCII without blanks; the keywords may be shortened to their
//! first letter (p, c, o, l).
//!
//! This layer knows the syntax only; what the options mean is `config`'s job.
//! Every statement keeps its line number for error messages.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UciFile {
    pub package: Option<String>,
    pub sections: Vec<Section>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    /// `None` for an anonymous section.
    pub name: Option<String>,
    pub line: usize,
    /// In file order; repeated options and lists are kept as written.
    pub options: Vec<UciOption>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UciOption {
    pub name: String,
    pub value: String,
    /// Written with `list` rather than `option`.
    pub is_list: bool,
    pub line: usize,
}

/// A syntax error at a line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.message)
    }
}

/// Parse a whole file. Every bad statement is reported, not only the first;
/// the statements around it are still read.
pub fn parse(text: &str) -> Result<UciFile, Vec<SyntaxError>> {
    let mut lexer = Lexer {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut file = UciFile {
        package: None,
        sections: Vec::new(),
    };
    let mut errors = Vec::new();
    while let Some(statement) = lexer.statement() {
        match statement.and_then(|(line, words)| apply(&mut file, line, words)) {
            Ok(()) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(file)
    } else {
        Err(errors)
    }
}

fn apply(file: &mut UciFile, line: usize, words: Vec<String>) -> Result<(), SyntaxError> {
    let err = |message: String| SyntaxError { line, message };
    let (command, args) = match words.split_first() {
        Some((c, a)) => (c.as_str(), a),
        None => return Ok(()),
    };
    let arity = |min: usize, max: usize| -> Result<(), SyntaxError> {
        if args.len() < min {
            Err(err(format!(
                "'{command}' needs {min} argument{}",
                if min == 1 { "" } else { "s" }
            )))
        } else if args.len() > max {
            Err(err(format!("too many arguments to '{command}'")))
        } else {
            Ok(())
        }
    };
    let command = match command {
        "p" => "package",
        "c" => "config",
        "o" => "option",
        "l" => "list",
        full => full,
    };
    match command {
        "package" => {
            arity(1, 1)?;
            check_name(&args[0], "package name", NameKind::Package).map_err(err)?;
            if !file.sections.is_empty() {
                return Err(err("'package' must come before the first 'config'".into()));
            }
            file.package = Some(args[0].clone());
        }
        "config" => {
            arity(1, 2)?;
            check_name(&args[0], "section type", NameKind::Type).map_err(err)?;
            let name = match args.get(1) {
                Some(n) => {
                    check_name(n, "section name", NameKind::Name).map_err(err)?;
                    Some(n.clone())
                }
                None => None,
            };
            file.sections.push(Section {
                kind: args[0].clone(),
                name,
                line,
                options: Vec::new(),
            });
        }
        "option" | "list" => {
            arity(2, 2)?;
            check_name(&args[0], "option name", NameKind::Name).map_err(err)?;
            let section = file
                .sections
                .last_mut()
                .ok_or_else(|| err(format!("'{command}' before any 'config' section")))?;
            section.options.push(UciOption {
                name: args[0].clone(),
                value: args[1].clone(),
                is_list: command == "list",
                line,
            });
        }
        other => {
            return Err(err(format!(
                "unknown command '{other}' (expected config, option, list or package)"
            )));
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum NameKind {
    /// Section and option names: `[A-Za-z0-9_]`.
    Name,
    /// Package names may also have `-`.
    Package,
    /// Section types: printable ASCII, no blanks.
    Type,
}

/// libuci's uci_validate_str rules.
fn check_name(name: &str, what: &str, kind: NameKind) -> Result<(), String> {
    let allowed = |b: u8| match kind {
        NameKind::Name => b.is_ascii_alphanumeric() || b == b'_',
        NameKind::Package => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
        NameKind::Type => b.is_ascii_graphic(),
    };
    if name.is_empty() {
        return Err(format!("empty {what}"));
    }
    if name.bytes().all(allowed) {
        return Ok(());
    }
    Err(match kind {
        NameKind::Type => {
            format!("invalid {what} '{name}': use printable characters without blanks")
        }
        NameKind::Package => {
            format!("invalid {what} '{name}': use letters, digits, '_' and '-' only")
        }
        NameKind::Name => {
            format!("invalid {what} '{name}': use letters, digits and underscores only")
        }
    })
}

struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    fn skip_to_end_of_line(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    /// The next non-empty statement: its first line and its words. `None` at
    /// the end of the file. On an error the rest of the line is skipped.
    fn statement(&mut self) -> Option<Result<(usize, Vec<String>), SyntaxError>> {
        loop {
            let start = self.line;
            let mut words = Vec::new();
            loop {
                match self.peek() {
                    None => break,
                    Some(b'\n' | b';') => {
                        self.bump();
                        break;
                    }
                    Some(b' ' | b'\t' | b'\r') => {
                        self.bump();
                    }
                    Some(b'#') => self.skip_to_end_of_line(),
                    Some(_) => match self.word() {
                        Ok(w) => words.push(w),
                        Err(e) => {
                            self.skip_to_end_of_line();
                            return Some(Err(e));
                        }
                    },
                }
            }
            if !words.is_empty() {
                return Some(Ok((start, words)));
            }
            self.peek()?;
        }
    }

    /// One word: bare, quoted, or pieces of both joined.
    fn word(&mut self) -> Result<String, SyntaxError> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b' ' | b'\t' | b'\r' | b'\n' | b'#' | b';') => break,
                Some(b'\'') => {
                    let line = self.line;
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(unterminated(line, '\'')),
                            Some(b'\'') => break,
                            Some(b) => out.push(b),
                        }
                    }
                }
                Some(b'"') => {
                    let line = self.line;
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(unterminated(line, '"')),
                            Some(b'"') => break,
                            Some(b'\\') => match self.bump() {
                                None => return Err(unterminated(line, '"')),
                                // Backslash-newline inside quotes joins the lines.
                                Some(b'\n') => {}
                                Some(b) => out.push(b),
                            },
                            Some(b) => out.push(b),
                        }
                    }
                }
                Some(b'\\') => {
                    self.bump();
                    match self.bump() {
                        // A trailing backslash continues the statement.
                        None | Some(b'\n') => {
                            if out.is_empty() {
                                // The word has not started: the continuation
                                // only joins lines.
                                return self.continue_word();
                            }
                            break;
                        }
                        Some(b) => out.push(b),
                    }
                }
                Some(b) => {
                    self.bump();
                    out.push(b);
                }
            }
        }
        String::from_utf8(out).map_err(|_| SyntaxError {
            line: self.line,
            message: "not valid UTF-8".into(),
        })
    }

    /// After a line continuation that came before any character of a word:
    /// skip blanks and read the word that follows, if any.
    fn continue_word(&mut self) -> Result<String, SyntaxError> {
        while let Some(b' ' | b'\t' | b'\r') = self.peek() {
            self.bump();
        }
        match self.peek() {
            None | Some(b'\n' | b'#' | b';') => Ok(String::new()),
            Some(_) => self.word(),
        }
    }
}

fn unterminated(line: usize, quote: char) -> SyntaxError {
    SyntaxError {
        line,
        message: format!("unterminated {quote} quote"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_section(text: &str) -> Section {
        let mut f = parse(text).unwrap();
        assert_eq!(f.sections.len(), 1);
        f.sections.remove(0)
    }

    fn values(s: &Section) -> Vec<&str> {
        s.options.iter().map(|o| o.value.as_str()).collect()
    }

    #[test]
    fn the_openwrt_shape() {
        let f = parse(
            "package ntpgate\n\nconfig server 'main'\n\toption enabled '1'\n\tlist listen '::'\n\tlist listen \"127.0.0.1\"\n# a comment\nconfig pinhole\n\toption suffix ::50 # trailing comment\n",
        )
        .unwrap();
        assert_eq!(f.package.as_deref(), Some("ntpgate"));
        assert_eq!(f.sections.len(), 2);
        let s = &f.sections[0];
        assert_eq!(
            (s.kind.as_str(), s.name.as_deref(), s.line),
            ("server", Some("main"), 3)
        );
        assert_eq!(values(s), ["1", "::", "127.0.0.1"]);
        assert_eq!(s.options[1].line, 5);
        assert!(s.options[1].is_list && !s.options[0].is_list);
        let p = &f.sections[1];
        assert_eq!((p.name.as_deref(), values(p)), (None, vec!["::50"]));
    }

    #[test]
    fn quoting_and_escapes() {
        let s = one_section(concat!(
            "config x\n",
            "option a 'it''s'\n",
            "option b \"say \\\"hi\\\" \\\\ #not a comment\"\n",
            "option c pre'mid dle'\"post\"\n",
            "option d back\\ slash\n",
            "option e 'single \\n stays'\n",
            "option f ''\n",
        ));
        assert_eq!(
            values(&s),
            [
                "its",
                "say \"hi\" \\ #not a comment",
                "premid dlepost",
                "back slash",
                "single \\n stays",
                ""
            ]
        );
    }

    #[test]
    fn multi_line_values_and_continuations() {
        let s = one_section(
            "config x\noption a 'one\ntwo'\noption b \\\n  value\noption c \"x\\\ny\"\noption d 4\n",
        );
        assert_eq!(values(&s), ["one\ntwo", "value", "xy", "4"]);
        let lines: Vec<usize> = s.options.iter().map(|o| o.line).collect();
        assert_eq!(lines, [2, 4, 6, 8]);
    }

    #[test]
    fn every_error_is_reported_with_its_line() {
        let errors = parse(concat!(
            "option early 1\n",
            "config server main\n",
            "option port 123 456\n",
            "option bad-name 1\n",
            "frobnicate x\n",
            "config 'bad name'\n",
            "option ok 1\n",
            "option unterminated 'abc\n",
        ))
        .unwrap_err();
        let got: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(got.len(), 6, "{got:#?}");
        assert_eq!(got[0].0, 1);
        assert!(got[0].1.contains("before any 'config'"));
        assert_eq!(got[1], (3, "too many arguments to 'option'"));
        assert_eq!(got[2].0, 4);
        assert!(got[2].1.contains("invalid option name 'bad-name'"));
        assert_eq!(got[3].0, 5);
        assert!(got[3].1.contains("unknown command 'frobnicate'"));
        assert_eq!(got[4].0, 6);
        assert_eq!(got[5], (8, "unterminated ' quote"));
    }

    #[test]
    fn missing_arguments() {
        let e = parse("config\n").unwrap_err();
        assert_eq!(e[0].message, "'config' needs 1 argument");
        let e = parse("config x\noption name\n").unwrap_err();
        assert_eq!(
            (e[0].line, e[0].message.as_str()),
            (2, "'option' needs 2 arguments")
        );
    }

    #[test]
    fn short_keywords_and_semicolons() {
        let f = parse("p ntp-gate\nc server main; o port 123; l listen ::1\nconfig 'my-type.x'\n")
            .unwrap();
        assert_eq!(f.package.as_deref(), Some("ntp-gate"));
        assert_eq!(values(&f.sections[0]), ["123", "::1"]);
        assert_eq!(f.sections[0].options[1].line, 2);
        assert_eq!(f.sections[1].kind, "my-type.x");
        assert!(parse("config 'a b'\n").is_err());
    }

    #[test]
    fn crlf_and_blank_files() {
        assert_eq!(parse("").unwrap().sections.len(), 0);
        assert_eq!(parse("\n\n# only comments\n").unwrap().sections.len(), 0);
        let s = one_section("config x\r\n\toption a 'b'\r\n");
        assert_eq!(values(&s), ["b"]);
    }
}
