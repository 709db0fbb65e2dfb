//! The formats a `--config` file can be in and how one is told from the other,
//! and the Java `.properties` reader (as `java.util.Properties.load` reads).

use std::path::Path;

use super::ConfigError;

/// The formats a `--config` file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML, Sluice's own format (deploy/config/).
    Yaml,
    /// Java properties, the format of Kafka's `config/server.properties`.
    Properties,
}

impl Format {
    /// How a config file is read: by its extension (`.properties`; `.yaml` or
    /// `.yml`), else by its content: properties when the first line that is not
    /// blank or a comment is `key=value` (an `=` before any `:`), else YAML.
    pub fn of(path: &Path, text: &str) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("properties") => Format::Properties,
            Some("yaml" | "yml") => Format::Yaml,
            _ if looks_like_properties(text) => Format::Properties,
            _ => Format::Yaml,
        }
    }
}

pub(super) fn looks_like_properties(text: &str) -> bool {
    let Some(line) = text
        .lines()
        .map(|l| l.trim_start_matches(PROPERTIES_SPACE))
        .find(|l| !l.is_empty() && !l.starts_with(['#', '!']))
    else {
        return false;
    };
    match (line.find('='), line.find(':')) {
        (Some(eq), Some(colon)) => eq < colon,
        (Some(_), None) => true,
        _ => false,
    }
}

/// One `key=value` of a properties file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub key: String,
    /// Unescaped and trimmed (Kafka trims every value it reads).
    pub value: String,
    /// The line the entry starts on, from 1.
    pub line: usize,
}

/// Whitespace in a properties file: space, tab, form feed.
const PROPERTIES_SPACE: [char; 3] = [' ', '\t', '\u{c}'];

/// Parses Java properties text as `java.util.Properties.load` does: lines end
/// at `\n`, `\r` or `\r\n`; a line whose first non-blank character is `#` or `!`
/// is a comment; a line ending in an odd number of backslashes continues on the
/// next one (whose leading blanks are dropped); the key ends at the first
/// unescaped `=`, `:` or blank, and one `=` or `:` with blanks around it
/// separates it from the value; `\t`, `\n`, `\r`, `\f`, `\uXXXX` and `\` before
/// any other character are escapes. Values are trimmed, as Kafka trims them.
/// Entries come back in file order, a key set twice included.
pub fn parse_properties(text: &str, origin: &str) -> Result<Vec<Property>, ConfigError> {
    let lines = natural_lines(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let mut current = lines[i].trim_start_matches(PROPERTIES_SPACE);
        i += 1;
        if current.is_empty() || current.starts_with(['#', '!']) {
            continue;
        }
        let mut logical = String::new();
        loop {
            let continued = current.len() - current.trim_end_matches('\\').len();
            if continued % 2 == 1 {
                logical.push_str(&current[..current.len() - 1]);
                if i < lines.len() {
                    current = lines[i].trim_start_matches(PROPERTIES_SPACE);
                    i += 1;
                    continue;
                }
            } else {
                logical.push_str(current);
            }
            break;
        }
        let (key, value) = split_property(&logical);
        let bad = |message: String| ConfigError::Parse {
            path: origin.to_string(),
            message: format!("line {line_no}: {message}"),
        };
        let key = unescape_property(key).map_err(bad)?;
        let value = unescape_property(value).map_err(bad)?;
        out.push(Property {
            key,
            // Java's String.trim, as Kafka applies it.
            value: value.trim_matches(|c: char| c <= ' ').to_string(),
            line: line_no,
        });
    }
    Ok(out)
}

/// Lines ended by `\n`, `\r` or `\r\n`.
fn natural_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(end) => {
                lines.push(&rest[..end]);
                let skip = if rest[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = &rest[end + skip..];
            }
            None => {
                lines.push(rest);
                break;
            }
        }
    }
    lines
}

/// The raw (still escaped) key and value of a logical line.
fn split_property(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    let mut separator = false;
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => {
                key_end = at;
                separator = true;
                break;
            }
            ' ' | '\t' | '\u{c}' => {
                key_end = at;
                break;
            }
            _ => {}
        }
    }
    let key = &line[..key_end];
    let mut rest = line[key_end..].get(1..).unwrap_or("");
    rest = rest.trim_start_matches(PROPERTIES_SPACE);
    if !separator && let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches(PROPERTIES_SPACE);
    }
    (key, rest)
}

/// The 4 hex digits of a `\uXXXX` escape.
fn hex4(chars: &mut std::str::Chars) -> Result<u32, String> {
    let digits: String = chars.by_ref().take(4).collect();
    if digits.len() == 4
        && let Ok(n) = u32::from_str_radix(&digits, 16)
    {
        return Ok(n);
    }
    Err(format!("malformed \\uXXXX escape: \\u{digits}"))
}

fn unescape_property(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => {}
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let unit = hex4(&mut chars)?;
                // Java escapes are UTF-16: a character beyond the BMP is a pair.
                let c = if (0xD800..0xDC00).contains(&unit) {
                    let low = if chars.next() == Some('\\') && chars.next() == Some('u') {
                        hex4(&mut chars)?
                    } else {
                        0
                    };
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(format!("\\u{unit:04X} is half a surrogate pair"));
                    }
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                } else {
                    char::from_u32(unit)
                };
                out.push(c.ok_or_else(|| format!("\\u{unit:04X} is not a character"))?);
            }
            Some(other) => out.push(other),
        }
    }
    Ok(out)
}
