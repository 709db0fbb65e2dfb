//! A client certificate's subject to a principal name, by Kafka's
//! `ssl.principal.mapping.rules`: a list of `RULE:pattern/replacement/[LU]`
//! and `DEFAULT`, tried in order on the subject's distinguished name as
//! RFC 2253 writes it (`CN=alice,OU=eng,O=Acme`, the most specific first,
//! as Java prints it). The first rule whose pattern matches the whole name
//! gives the principal (`$1` and the like refer to its groups; `L` and `U`
//! lower- or upper-case the result); `DEFAULT` gives the name unchanged. No
//! matching rule refuses the client, as in Kafka.

use regex::Regex;

use crate::AuthError;

const KEY: &str = "ssl.principal.mapping.rules";

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct MappingRules {
    rules: Vec<Rule>,
}

impl Default for MappingRules {
    /// Kafka's default: `DEFAULT` (the whole distinguished name).
    fn default() -> Self {
        MappingRules {
            rules: vec![Rule::Default],
        }
    }
}

/// Reads up to the next unescaped `/`; `\/` stands for `/`, other escapes
/// stay (they mean something to the regex).
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '/' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '/')) => out.push('/'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    None
}

impl MappingRules {
    /// Parses the config value (empty: `DEFAULT`).
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let bad = |m: String| AuthError::Config {
            key: KEY.into(),
            message: m,
        };
        let mut rules = Vec::new();
        let mut rest = value.trim();
        while !rest.is_empty() {
            rest = rest.trim_start_matches([',', ' ', '\t', '\n']);
            if rest.is_empty() {
                break;
            }
            if let Some(r) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = r;
            } else if let Some(r) = rest.strip_prefix("RULE:") {
                let (pattern, r) = until_slash(r).ok_or_else(|| {
                    bad(format!(
                        "{rest:?}: RULE:pattern/replacement/ has no '/' after the pattern"
                    ))
                })?;
                let (replacement, r) = until_slash(r).ok_or_else(|| {
                    bad(format!(
                        "{rest:?}: RULE:pattern/replacement/ has no '/' after the replacement"
                    ))
                })?;
                let (case, r) = match r.chars().next() {
                    Some('L') => (Case::Lower, &r[1..]),
                    Some('U') => (Case::Upper, &r[1..]),
                    _ => (Case::Keep, r),
                };
                // Java's matches(): the pattern must cover the whole name.
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| bad(format!("pattern {pattern:?}: {e}")))?;
                let replacement = java_replacement(&replacement, pattern.captures_len() - 1);
                rules.push(Rule::Replace {
                    pattern,
                    replacement,
                    case,
                });
                rest = r;
            } else {
                return Err(bad(format!(
                    "{rest:?}: expected RULE:pattern/replacement/[LU] or DEFAULT"
                )));
            }
            rest = rest.trim_start();
            if !rest.is_empty() && !rest.starts_with(',') {
                return Err(bad(format!("{rest:?}: rules are separated by commas")));
            }
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(MappingRules { rules })
    }

    /// The principal name for a distinguished name; `None` when no rule
    /// applies (the client is refused).
    pub fn apply(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(dn.to_string()),
            Rule::Replace {
                pattern,
                replacement,
                case,
            } => {
                let caps = pattern.captures(dn)?;
                let mut name = String::new();
                caps.expand(replacement, &mut name);
                Some(match case {
                    Case::Keep => name,
                    Case::Lower => name.to_lowercase(),
                    Case::Upper => name.to_uppercase(),
                })
            }
        })
    }
}

/// A Java replacement string (Kafka's rules use `String.replaceAll`) in the
/// regex crate's syntax: `$12` is group 12 only if the pattern has 12
/// groups (else group 1 then `2`), a group the pattern lacks is literal
/// text, and `\x` is a literal `x`.
fn java_replacement(java: &str, groups: usize) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut n: Option<usize> = None;
                while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                    let next = n.unwrap_or(0) * 10 + d as usize;
                    if n.is_some() && next > groups {
                        break;
                    }
                    n = Some(next);
                    chars.next();
                }
                match n {
                    Some(g) if g <= groups => out.push_str(&format!("${{{g}}}")),
                    Some(g) => out.push_str(&format!("$${g}")),
                    None => out.push_str("$$"),
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The subject of a DER certificate in RFC 2253's form, close to Java's
/// `X500Principal.getName()`: relative names from the most specific (`CN`)
/// to the least (`C`), short names for the usual attributes, RFC 2253
/// escapes. Differences from Java: an attribute without a short name is
/// written `OID=value`, not `OID=#<hex DER>`, and `=` is not escaped; rules
/// and ACLs that name such subjects may need adjusting.
pub fn subject_dn(der: &[u8]) -> Result<String, AuthError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| AuthError::Certificate(format!("cannot parse it: {e}")))?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let name = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.6" => "C",
                "2.5.4.9" => "STREET",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                other => other,
            }
            .to_string();
            let value = attr
                .as_str()
                .map_err(|e| AuthError::Certificate(format!("subject attribute {name}: {e}")))?;
            parts.push(format!("{name}={}", escape(value)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn kafkas_documented_rules_map_as_in_kafka() {
        // The examples of Kafka's documentation (ssl.principal.mapping.rules).
        let rules = MappingRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,\
             RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,\
             RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,\
             DEFAULT",
        )
        .unwrap();
        assert_eq!(
            rules.apply("CN=kafka1,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            Some("kafka1".into())
        );
        assert_eq!(
            rules.apply("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown"),
            Some("adminuser@admin".into())
        );
        assert_eq!(rules.apply("cn=Bob.Smith,O=x"), Some("bob.smith".into()));
        assert_eq!(
            rules.apply("O=no-common-name"),
            Some("O=no-common-name".into())
        );
    }

    #[test]
    fn no_matching_rule_refuses_and_bad_rules_are_named() {
        let rules = MappingRules::parse("RULE:^CN=(.*),O=Acme$/$1/U").unwrap();
        assert_eq!(rules.apply("CN=svc,O=Acme"), Some("SVC".into()));
        assert_eq!(rules.apply("CN=svc,O=Other"), None);
        assert_eq!(
            MappingRules::parse("").unwrap().apply("CN=x"),
            Some("CN=x".into())
        );
        // An escaped slash stays in the pattern.
        let r = MappingRules::parse(r"RULE:^CN=a\/b$/ab/").unwrap();
        assert_eq!(r.apply("CN=a/b"), Some("ab".into()));
        // Java's replacement syntax: $1x is group 1 then x; a group the
        // pattern lacks is literal; \$ is a dollar.
        let r = MappingRules::parse(r"RULE:^CN=(.*),O=(.*)$/$1x-$3-\$$2/").unwrap();
        assert_eq!(r.apply("CN=svc,O=acme"), Some("svcx-$3-$acme".into()));
        for bad in ["RULE:^CN=(.*)$/$1", "RULE:(/x/", "NOPE", "DEFAULT DEFAULT"] {
            let e = MappingRules::parse(bad).unwrap_err().to_string();
            assert!(e.contains(KEY), "{bad}: {e}");
        }
    }

    #[test]
    fn a_certificates_subject_reads_most_specific_first() {
        let dir = tempfile::tempdir().unwrap();
        let ca = sluice_tls::testing::TestCa::new(dir.path(), "c");
        let f = ca.issue(
            "a",
            "alice, the admin",
            &[],
            sluice_tls::testing::Validity::Current,
        );
        let pem = std::fs::read(f.certificate.unwrap()).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(subject_dn(&der).unwrap(), r"CN=alice\, the admin");
        assert!(subject_dn(b"junk").is_err());
    }
}
