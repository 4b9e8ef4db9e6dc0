//! A parser for Apache combined log lines (the format of `examples/data/apache_access.log`):
//! `host ident authuser [time] "request" status bytes "referer" "user-agent"`.

use std::fmt;

/// One request in the Apache combined log format:
/// `client ident user [time] "method path protocol" status bytes "referer" "agent"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub(crate) client: String,
    pub(crate) time: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) status: u16,
    /// `None` for `-` (nothing sent).
    pub(crate) bytes: Option<u64>,
    pub(crate) referer: String,
    pub(crate) agent: String,
}

/// Why a line is not a [`LogRecord`]; `field` names the part of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The line ends before `field`.
    Missing(&'static str),
    /// `field` opens with its delimiter but never closes.
    Unterminated { field: &'static str, close: char },
    /// `field` is there but malformed.
    Invalid { field: &'static str, value: String },
    /// Text after the last field.
    Trailing(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Missing(field) => write!(f, "the line ends before the {field}"),
            ParseError::Unterminated { field, close } => {
                write!(f, "the {field} has no closing `{close}`")
            }
            ParseError::Invalid { field, value } => write!(f, "invalid {field}: {value:?}"),
            ParseError::Trailing(rest) => write!(f, "unexpected text at the end: {rest:?}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads a line field by field, left to right; fields are separated by one space.
struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Fields<'a> {
    /// The next field up to a space (or the end of the line).
    fn token(&mut self, field: &'static str) -> Result<&'a str, ParseError> {
        let (token, rest) = self.rest.split_once(' ').unwrap_or((self.rest, ""));
        if token.is_empty() {
            return Err(ParseError::Missing(field));
        }
        self.rest = rest;
        Ok(token)
    }

    /// The next field between `open` and `close` (a backslash escapes the next character,
    /// as Apache writes `\"`), without them.
    fn delimited(
        &mut self,
        field: &'static str,
        open: char,
        close: char,
    ) -> Result<&'a str, ParseError> {
        let Some(body) = self.rest.strip_prefix(open) else {
            return Err(if self.rest.is_empty() {
                ParseError::Missing(field)
            } else {
                ParseError::Invalid {
                    field,
                    value: format!("does not start with `{open}`"),
                }
            });
        };
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == close {
                let after = &body[i + c.len_utf8()..];
                self.rest = match after.strip_prefix(' ') {
                    Some(rest) => rest,
                    None if after.is_empty() => after,
                    None => {
                        return Err(ParseError::Invalid {
                            field,
                            value: format!("text right after the closing `{close}`"),
                        })
                    }
                };
                return Ok(&body[..i]);
            }
        }
        Err(ParseError::Unterminated { field, close })
    }
}

/// Parses one line of an Apache combined log.
pub(crate) fn parse(line: &str) -> Result<LogRecord, ParseError> {
    let mut fields = Fields { rest: line };
    let client = fields.token("client")?;
    let _ident = fields.token("ident")?;
    let _user = fields.token("user")?;
    let time = fields.delimited("time", '[', ']')?;
    let request = fields.delimited("request", '"', '"')?;
    let status = fields.token("status")?;
    let bytes = fields.token("bytes")?;
    let referer = fields.delimited("referer", '"', '"')?;
    let agent = fields.delimited("user agent", '"', '"')?;
    if !fields.rest.is_empty() {
        return Err(ParseError::Trailing(fields.rest.to_string()));
    }
    // "GET /path HTTP/1.1"; the protocol is absent in HTTP/0.9 requests.
    let mut parts = request.split(' ');
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(ParseError::Invalid {
            field: "request",
            value: request.to_string(),
        });
    };
    let invalid = |field, value: &str| ParseError::Invalid {
        field,
        value: value.to_string(),
    };
    let status_code = match status.parse::<u16>() {
        Ok(code) if status.len() == 3 => code,
        _ => return Err(invalid("status", status)),
    };
    let bytes = match bytes {
        "-" => None,
        n => Some(n.parse().map_err(|_| invalid("bytes", n))?),
    };
    Ok(LogRecord {
        client: client.to_string(),
        time: time.to_string(),
        method: method.to_string(),
        path: path.to_string(),
        status: status_code,
        bytes,
        referer: referer.to_string(),
        agent: agent.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// The streaming job.

/// What the streaming job keeps of a request: `(client, path, status)`. (Records in a
/// DStream must be serde-serializable; the facade does not re-export serde, so plain tuples
/// flow instead of `LogRecord`.)
#[cfg(test)]
mod tests {
    use super::{parse, ParseError};

    const LINE: &str = r#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36""#;

    #[test]
    fn parses_a_combined_log_line() {
        let r = parse(LINE).unwrap();
        assert_eq!(r.client, "83.149.9.216");
        assert_eq!(r.time, "17/May/2015:10:05:03 +0000");
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.path,
            "/presentations/logstash-monitorama-2013/images/kibana-search.png"
        );
        assert_eq!((r.status, r.bytes), (200, Some(203023)));
        assert!(r.referer.starts_with("http://semicomplete.com/"));
        assert!(r.agent.ends_with("Safari/537.36"));
    }

    #[test]
    fn dash_bytes_and_escaped_quotes() {
        let line = r#"1.2.3.4 - - [t] "GET / HTTP/1.0" 304 - "-" "say \"hi\"""#;
        let r = parse(line).unwrap();
        assert_eq!((r.status, r.bytes), (304, None));
        assert_eq!(r.agent, r#"say \"hi\""#);
    }

    #[test]
    fn malformed_lines_are_errors() {
        // Line 8,899 of the bundled log: the user agent is cut off.
        let truncated = r#"46.118.127.106 - - [20/May/2015:12:05:17 +0000] "GET /scripts/grok-py-test/configlib.py HTTP/1.1" 200 235 "-" "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html"#;
        assert_eq!(
            parse(truncated),
            Err(ParseError::Unterminated {
                field: "user agent",
                close: '"'
            })
        );
        assert_eq!(parse(""), Err(ParseError::Missing("client")));
        assert!(matches!(
            parse(&LINE.replace(" 200 ", " 2x0 ")),
            Err(ParseError::Invalid {
                field: "status",
                ..
            })
        ));
        assert!(matches!(
            parse(&format!("{LINE} extra")),
            Err(ParseError::Trailing(_))
        ));
    }
}
