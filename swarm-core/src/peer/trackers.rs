//! Which tracker node a peer (re)connects to, for both drivers: the URLs its user configured,
//! in their order, then the ones the latest `welcome` named (`ServerMsg::Welcome::trackers`,
//! every node of a tracker cluster), deduplicated and bounded ([`MAX_LEARNED_TRACKERS`]), only
//! `ws://` and `wss://` URLs. A cluster sends the list again when its nodes change
//! (`ServerMsg::Trackers`); a node once known by `wss://` is never taken back as `ws://`.
//!
//! The rotation: a driver connects to [`TrackerList::current`]; when an attempt fails it moves
//! on with [`TrackerList::advance`] (wrapping around), keeping its reconnect backoff
//! ([`super::backoff`]) between attempts. After a session closes, the first attempt goes to
//! the node it was on (a restart or a blip), the next ones to the others; after the node went
//! silent (down or cut off, where an attempt would wait out its open timeout), the native
//! driver advances first.

use super::config::MAX_LEARNED_TRACKERS;

/// A tracker URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerUrlError {
    #[error("no tracker URL given")]
    Empty,
    #[error("{url:?} is not a tracker URL: it must be ws://HOST[:PORT]/PATH or wss://HOST/PATH (like ws://127.0.0.1:8080/ws)")]
    NotWebsocket { url: String },
}

/// Checks that `url` is a `ws://` or `wss://` URL with a host (no spaces or control
/// characters).
pub fn check_url(url: &str) -> Result<(), TrackerUrlError> {
    let bad = || TrackerUrlError::NotWebsocket { url: url.to_string() };
    let scheme_len = url.find("://").ok_or_else(bad)?;
    if !(url[..scheme_len].eq_ignore_ascii_case("ws") || url[..scheme_len].eq_ignore_ascii_case("wss")) {
        return Err(bad());
    }
    let rest = &url[scheme_len + 3..];
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok(())
}

fn is_wss(url: &str) -> bool {
    url.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("wss://"))
}

/// `wss://…` for a `ws://…` URL (`None` for any other).
fn secure_twin(url: &str) -> Option<String> {
    let rest = url.get(..5).filter(|s| s.eq_ignore_ascii_case("ws://")).map(|_| &url[5..])?;
    Some(format!("wss://{rest}"))
}

/// The tracker URLs to connect to, and the one in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerList {
    configured: Vec<String>,
    learned: Vec<String>,
    current: String,
}

impl TrackerList {
    /// The URLs a user configured, first one first (checked with [`check_url`]; duplicates
    /// dropped). Starts at the first.
    pub fn new<S: Into<String>>(configured: impl IntoIterator<Item = S>) -> Result<Self, TrackerUrlError> {
        let mut list: Vec<String> = Vec::new();
        for url in configured {
            let url: String = url.into();
            check_url(&url)?;
            if !list.contains(&url) {
                list.push(url);
            }
        }
        let current = list.first().cloned().ok_or(TrackerUrlError::Empty)?;
        Ok(Self { configured: list, learned: Vec::new(), current })
    }

    /// Takes the nodes a `welcome` named, replacing those of the previous one: the usable
    /// `ws://` / `wss://` URLs (`accept` may refuse more, e.g. `ws://` from an `https:` page)
    /// that are not configured already, at most [`MAX_LEARNED_TRACKERS`]. A peer configured
    /// with any `wss://` URL never learns a `ws://` one: a `welcome` cannot downgrade it to
    /// plain text. Returns whether the list changed.
    pub fn learn(&mut self, trackers: &[String], accept: impl Fn(&str) -> bool) -> bool {
        let secure = self.configured.iter().any(|u| is_wss(u));
        let accept = |url: &str| accept(url) && (!secure || is_wss(url));
        let mut learned: Vec<String> = Vec::new();
        for url in trackers {
            if learned.len() == MAX_LEARNED_TRACKERS {
                break;
            }
            // A node known by `wss://` (configured, learned before or named in this list) is
            // kept at `wss://`: a list naming it `ws://` does not downgrade it.
            let url = match secure_twin(url) {
                Some(tls) if self.urls().any(|u| u == tls) || trackers.contains(&tls) => tls,
                _ => url.clone(),
            };
            if check_url(&url).is_ok() && accept(&url) && !self.configured.contains(&url) && !learned.contains(&url) {
                learned.push(url);
            }
        }
        let changed = learned != self.learned;
        self.learned = learned;
        changed
    }

    /// Every URL in rotation order: the configured ones, then the learned ones.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.configured.iter().chain(&self.learned).map(String::as_str)
    }

    /// How many URLs there are.
    pub fn len(&self) -> usize {
        self.configured.len() + self.learned.len()
    }

    /// Never: there is always a configured URL.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The URL to connect to now.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Moves on to the URL after the current one (after the last, the first; from a URL no
    /// longer listed, the first) and returns it.
    pub fn advance(&mut self) -> &str {
        let at = self.urls().position(|u| u == self.current);
        let next = at.map_or(0, |i| (i + 1) % self.len());
        let url = self.urls().nth(next).expect("in range").to_string();
        self.current = url;
        &self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(urls: &[&str]) -> TrackerList {
        TrackerList::new(urls.iter().copied()).unwrap()
    }

    fn owned(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn a_welcome_never_downgrades_a_wss_peer_to_ws() {
        let mut l = list(&["wss://a.example/ws"]);
        l.learn(&owned(&["ws://b.example/ws", "wss://c.example/ws", "WS://d.example/ws"]), |_| true);
        assert_eq!(l.urls().collect::<Vec<_>>(), ["wss://a.example/ws", "wss://c.example/ws"]);
        let mut plain = list(&["ws://a:1/ws"]);
        plain.learn(&owned(&["ws://b:1/ws", "wss://c/ws"]), |_| true);
        assert_eq!(plain.len(), 3, "a ws:// peer takes both");
    }

    #[test]
    fn only_websocket_urls_with_a_host_are_accepted() {
        for ok in ["ws://127.0.0.1:8080/ws", "wss://pp.example.org/ws", "WSS://[::1]:9/ws", "ws://h"] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for bad in ["http://h/ws", "h:8080/ws", "ws://", "ws:///ws", "ws://:80/ws", "ws://a b/ws", "", "wss:/h/ws"] {
            let e = check_url(bad).unwrap_err();
            assert!(e.to_string().contains("ws://HOST"), "{bad}: {e}");
        }
        assert_eq!(TrackerList::new(Vec::<String>::new()), Err(TrackerUrlError::Empty));
        assert!(TrackerList::new(["ws://a/ws", "http://b/ws"]).is_err(), "one bad URL refuses the list");
    }

    #[test]
    fn rotation_goes_through_configured_then_learned_and_wraps() {
        let mut l = list(&["ws://a/ws", "ws://b/ws", "ws://a/ws"]);
        assert_eq!(l.urls().collect::<Vec<_>>(), ["ws://a/ws", "ws://b/ws"], "duplicates dropped");
        assert!(l.learn(&owned(&["ws://b/ws", "wss://c/ws", "wss://c/ws", "ws://d/ws"]), |_| true));
        assert_eq!(l.urls().collect::<Vec<_>>(), ["ws://a/ws", "ws://b/ws", "wss://c/ws", "ws://d/ws"]);
        assert_eq!(l.current(), "ws://a/ws");
        let order: Vec<String> = (0..5).map(|_| l.advance().to_string()).collect();
        assert_eq!(order, ["ws://b/ws", "wss://c/ws", "ws://d/ws", "ws://a/ws", "ws://b/ws"]);
        assert!(!l.learn(&owned(&["ws://b/ws", "wss://c/ws", "ws://d/ws"]), |_| true), "same list: no change");
    }

    #[test]
    fn learned_urls_are_bounded_checked_and_replaced_by_the_next_welcome() {
        let mut l = list(&["ws://a/ws"]);
        let many: Vec<String> = (0..100).map(|i| format!("ws://node{i}/ws")).collect();
        l.learn(&many, |_| true);
        assert_eq!(l.len(), 1 + MAX_LEARNED_TRACKERS, "a tracker cannot make a peer keep 100 URLs");
        l.learn(&owned(&["http://evil/ws", "javascript:alert(1)", "ws://x y/ws", "ws://ok/ws"]), |_| true);
        assert_eq!(l.urls().collect::<Vec<_>>(), ["ws://a/ws", "ws://ok/ws"]);
        l.learn(&owned(&["ws://plain/ws", "wss://tls/ws"]), |u| u.starts_with("wss://"));
        assert_eq!(l.urls().collect::<Vec<_>>(), ["ws://a/ws", "wss://tls/ws"], "the driver's filter applies");
    }

    #[test]
    fn an_updated_node_list_adds_and_removes_nodes_and_never_downgrades_tls() {
        let mut l = list(&["wss://a/ws"]);
        assert!(l.learn(&owned(&["wss://a/ws", "wss://b/ws"]), |_| true));
        // A node joined while connected; another list names the known ones without TLS.
        assert!(l.learn(&owned(&["ws://a/ws", "ws://b/ws", "wss://c/ws"]), |_| true));
        assert_eq!(l.urls().collect::<Vec<_>>(), ["wss://a/ws", "wss://b/ws", "wss://c/ws"], "kept at wss");
        // Node b went silent: it leaves the list; a plain node is never learned by a peer
        // that chose TLS (it would be a downgrade).
        assert!(l.learn(&owned(&["wss://a/ws", "wss://c/ws", "ws://d/ws"]), |_| true));
        assert_eq!(l.urls().collect::<Vec<_>>(), ["wss://a/ws", "wss://c/ws"]);
        let many: Vec<String> = (0..40).map(|i| format!("wss://n{i}/ws")).collect();
        l.learn(&many, |_| true);
        assert_eq!(l.len(), 1 + MAX_LEARNED_TRACKERS, "updates are bounded like welcomes");
    }

    #[test]
    fn a_current_url_that_is_no_longer_listed_moves_on_to_the_first() {
        let mut l = list(&["ws://a/ws"]);
        l.learn(&owned(&["ws://b/ws", "ws://c/ws"]), |_| true);
        assert_eq!(l.advance(), "ws://b/ws");
        l.learn(&owned(&["ws://c/ws"]), |_| true);
        assert_eq!(l.current(), "ws://b/ws", "kept until an attempt fails");
        assert_eq!(l.advance(), "ws://a/ws");
        assert_eq!(l.advance(), "ws://c/ws");
        let mut single = list(&["ws://only/ws"]);
        assert_eq!(single.advance(), "ws://only/ws", "one URL: always that one");
    }
}
