//! Share links: the one token a user passes around for a file, the same for `pp-peer` and the
//! page.
//!
//! ```text
//! {web}/#/file/{id}                 a public file (id: 64 lower-case hex digits)
//! {web}/#/file/{id}?key={key}       a private file; key: 32 bytes, base64url without padding
//! {web}/#/file/{id}?pass            a private file whose key comes from a passphrase
//! ```
//!
//! `{web}` is the tracker's web address (`http(s)://host[:port]`, optionally with a path and a
//! `?token=…` join-token query). Everything after `#` is the URL's fragment, which browsers never
//! send to a server: the key of a private file reaches only the peer that opens the link.
//!
//! [`Target::parse`] also takes a bare id (64 hex digits, optionally followed by `?key=…`) and
//! otherwise treats the input as a file name to search for.

use crate::content::FileId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::fmt;
use std::str::FromStr;

/// The secret part of a private file's link.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The file key itself.
    Key([u8; 32]),
    /// The key is derived from a passphrase the user types.
    Passphrase,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Never print a key into a log.
            Secret::Key(_) => f.write_str("Key(…)"),
            Secret::Passphrase => f.write_str("Passphrase"),
        }
    }
}

/// A parsed share link (or bare id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLink {
    /// The tracker's web address the link was made for (`None` for a bare id).
    pub web: Option<String>,
    pub file: FileId,
    pub secret: Option<Secret>,
}

/// What the user asked for: a link or id, or a name to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Link(ShareLink),
    Name(String),
}

/// Why a share link could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    #[error("not a share link: expected {{web}}/#/file/<64 hex digits>, got {0:?}")]
    BadLink(String),
    #[error("the link's file id is not 64 hex digits: {0:?}")]
    BadId(String),
    #[error("the link's key is not 32 bytes of base64url: {0:?}")]
    BadKey(String),
    #[error("unknown part in the link's fragment: {0:?}")]
    UnknownParam(String),
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

/// A file key as a link carries it (`?key=…`: 32 bytes, base64url without padding).
pub fn parse_key(k: &str) -> Result<[u8; 32], ShareError> {
    let bytes = URL_SAFE_NO_PAD.decode(k).map_err(|_| ShareError::BadKey(clip(k)))?;
    bytes.try_into().map_err(|_| ShareError::BadKey(clip(k)))
}

impl ShareLink {
    /// Reads the fragment part after `#/file/` (`{id}[?key=…|?pass]`).
    fn from_fragment(web: Option<String>, rest: &str) -> Result<Self, ShareError> {
        let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
        let id = id.trim_end_matches('/');
        let file = FileId::from_str(id).map_err(|_| ShareError::BadId(clip(id)))?;
        let mut secret = None;
        for part in query.split('&').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("key", k)) => secret = Some(Secret::Key(parse_key(k)?)),
                None if part == "pass" => secret = Some(Secret::Passphrase),
                _ => return Err(ShareError::UnknownParam(clip(part))),
            }
        }
        Ok(ShareLink { web, file, secret })
    }

    /// The fragment this link puts after `#` (`/file/{id}[?key=…|?pass]`).
    pub fn fragment(&self) -> String {
        let mut s = format!("/file/{}", self.file.to_hex());
        match &self.secret {
            Some(Secret::Key(k)) => {
                s.push_str("?key=");
                s.push_str(&URL_SAFE_NO_PAD.encode(k));
            }
            Some(Secret::Passphrase) => s.push_str("?pass"),
            None => {}
        }
        s
    }
}

impl fmt::Display for ShareLink {
    /// The full link (`{web}/#/file/…`), or `{id}[?key=…]` when there is no web address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.web {
            // `http://h/?token=t` takes the fragment right after the query.
            Some(web) if web.contains('?') => write!(f, "{web}#{}", self.fragment()),
            Some(web) => write!(f, "{}/#{}", web.trim_end_matches('/'), self.fragment()),
            None => f.write_str(self.fragment().trim_start_matches("/file/")),
        }
    }
}

impl Target {
    /// Reads what a user typed: a share link, an id (with an optional `?key=…`), or a name.
    pub fn parse(input: &str) -> Result<Target, ShareError> {
        let input = input.trim();
        if let Some((web, frag)) = input.split_once('#') {
            let rest = frag.strip_prefix("/file/").ok_or_else(|| ShareError::BadLink(clip(input)))?;
            let web = web.trim_end_matches('/');
            let web = (!web.is_empty()).then(|| web.to_string());
            return ShareLink::from_fragment(web, rest).map(Target::Link);
        }
        let head = input.split_once('?').map_or(input, |(h, _)| h);
        if head.len() == 64 && head.bytes().all(|b| b.is_ascii_hexdigit()) {
            return ShareLink::from_fragment(None, input).map(Target::Link);
        }
        if input.starts_with("http://") || input.starts_with("https://") {
            return Err(ShareError::BadLink(clip(input)));
        }
        Ok(Target::Name(input.to_string()))
    }
}

/// The web address of the tracker behind a websocket URL: `ws://h:p/ws` → `http://h:p`,
/// `wss://h/pp/ws` → `https://h/pp`. A `?token=…` query is kept (the page reads its join
/// token from there).
pub fn web_address(tracker_ws: &str) -> String {
    let (base, query) = tracker_ws.split_once('?').map_or((tracker_ws, None), |(b, q)| (b, Some(q)));
    let base = if let Some(rest) = base.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = base.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        base.to_string()
    };
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/ws").unwrap_or(base).to_string();
    match query.filter(|q| q.split('&').any(|p| p.starts_with("token="))) {
        Some(q) => {
            let token: Vec<&str> = q.split('&').filter(|p| p.starts_with("token=")).collect();
            format!("{base}/?{}", token.join("&"))
        }
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: u8) -> FileId {
        FileId([b; 32])
    }

    #[test]
    fn public_private_and_passphrase_links_round_trip() {
        for secret in [None, Some(Secret::Key([7; 32])), Some(Secret::Passphrase)] {
            let link = ShareLink { web: Some("https://swarm.example".into()), file: id(0xab), secret };
            let text = link.to_string();
            assert!(text.starts_with("https://swarm.example/#/file/abab"), "{text}");
            assert_eq!(Target::parse(&text), Ok(Target::Link(link)));
        }
    }

    #[test]
    fn bare_ids_names_and_bad_links() {
        let hex = id(1).to_hex();
        assert_eq!(Target::parse(&hex), Ok(Target::Link(ShareLink { web: None, file: id(1), secret: None })));
        assert_eq!(Target::parse("  holiday.mp4 "), Ok(Target::Name("holiday.mp4".into())));
        assert!(matches!(Target::parse("http://h/#/files/x"), Err(ShareError::BadLink(_))));
        assert!(matches!(Target::parse("http://h/#/file/123"), Err(ShareError::BadId(_))));
        assert!(matches!(Target::parse(&format!("{hex}?key=short")), Err(ShareError::BadKey(_))));
        assert!(matches!(Target::parse(&format!("{hex}?evil=1")), Err(ShareError::UnknownParam(_))));
        assert!(matches!(Target::parse("https://h/"), Err(ShareError::BadLink(_))));
    }

    #[test]
    fn keys_never_reach_debug_output() {
        let link = ShareLink { web: None, file: id(2), secret: Some(Secret::Key([9; 32])) };
        let key_text = URL_SAFE_NO_PAD.encode([9u8; 32]);
        assert!(!format!("{link:?}").contains(&key_text));
        assert!(link.to_string().contains(&key_text));
    }

    #[test]
    fn web_address_from_tracker_url() {
        assert_eq!(web_address("ws://127.0.0.1:8080/ws"), "http://127.0.0.1:8080");
        assert_eq!(web_address("wss://swarm.example/pp/ws"), "https://swarm.example/pp");
        assert_eq!(web_address("ws://h/ws?token=abc"), "http://h/?token=abc");
        let link = ShareLink { web: Some(web_address("ws://h/ws?token=abc")), file: id(3), secret: None };
        assert_eq!(link.to_string(), format!("http://h/?token=abc#/file/{}", id(3).to_hex()));
        assert_eq!(Target::parse(&link.to_string()), Ok(Target::Link(link)));
    }

    proptest! {
        #[test]
        fn any_link_round_trips(file in any::<[u8; 32]>(), key in proptest::option::of(any::<[u8; 32]>()),
                                host in "[a-z]{1,10}(\\.[a-z]{2,5})?(:[0-9]{2,5})?") {
            let link = ShareLink { web: Some(format!("https://{host}")), file: FileId(file), secret: key.map(Secret::Key) };
            prop_assert_eq!(Target::parse(&link.to_string()), Ok(Target::Link(link)));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = Target::parse(&s);
        }
    }
}
