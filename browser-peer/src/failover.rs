//! Which tracker node the page talks to, as pure logic (no browser calls, tested natively).
//!
//! The page connects to its own origin's `/ws` ([`origin_ws_url`]). Each `welcome` names every
//! node of a tracker cluster; the page keeps those it can reach from where it was loaded
//! ([`reachable_from`]: an `https:` page cannot open `ws://`) in a
//! [`swarm_core::peer::trackers::TrackerList`], its origin first. When a welcomed session
//! drops, the page reconnects to the same node; when an attempt fails (the socket closed
//! before a `welcome`), it moves on to the next node ([`next_url`]), with the usual backoff.
//! [`node_label`] is what the status line shows of the node in use.

use swarm_core::peer::trackers::TrackerList;

/// `ws(s)://<host>/ws` for a page loaded with `protocol` (`"https:"`, `"http:"`) from `host`:
/// the tracker serves both the page and the socket.
pub fn origin_ws_url(protocol: &str, host: &str) -> String {
    let scheme = if protocol == "https:" { "wss" } else { "ws" };
    format!("{scheme}://{host}/ws")
}

/// Whether a page loaded with `protocol` may open a websocket to `url`: an `https:` page only
/// `wss://` (browsers block `ws://` from a secure page as mixed content).
pub fn reachable_from(protocol: &str, url: &str) -> bool {
    protocol != "https:" || url.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("wss://"))
}

/// The URL of the next attempt, after a socket to the current one closed: the same node when
/// its session had been welcomed (a restart or a blip), else the next node of the list.
pub fn next_url(list: &mut TrackerList, was_welcomed: bool) -> &str {
    if was_welcomed {
        list.current()
    } else {
        list.advance()
    }
}

/// The node's `host[:port]`, for the status line.
pub fn node_label(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn the_page_starts_on_its_own_origin() {
        assert_eq!(origin_ws_url("https:", "pp.example.org"), "wss://pp.example.org/ws");
        assert_eq!(origin_ws_url("http:", "127.0.0.1:8080"), "ws://127.0.0.1:8080/ws");
    }

    #[test]
    fn a_secure_page_keeps_only_secure_nodes() {
        assert!(reachable_from("https:", "wss://b.example.org/ws"));
        assert!(!reachable_from("https:", "ws://b.example.org/ws"), "mixed content");
        assert!(reachable_from("http:", "ws://b:8081/ws") && reachable_from("http:", "wss://b/ws"));
        let mut list = TrackerList::new([origin_ws_url("https:", "a")]).unwrap();
        list.learn(&owned(&["wss://a/ws", "ws://b/ws", "wss://c/ws"]), |u| reachable_from("https:", u));
        assert_eq!(list.urls().collect::<Vec<_>>(), ["wss://a/ws", "wss://c/ws"]);
    }

    #[test]
    fn a_dropped_session_retries_its_node_then_fails_over_in_turn() {
        let mut list = TrackerList::new(["ws://a:8080/ws"]).unwrap();
        // The welcome of node a names all three nodes, a included.
        list.learn(&owned(&["ws://a:8080/ws", "ws://b:8081/ws", "ws://c:8082/ws"]), |_| true);
        assert_eq!(next_url(&mut list, true), "ws://a:8080/ws", "a welcomed session dropped: the same node first");
        assert_eq!(next_url(&mut list, false), "ws://b:8081/ws", "that failed: the next node");
        assert_eq!(next_url(&mut list, false), "ws://c:8082/ws");
        assert_eq!(next_url(&mut list, false), "ws://a:8080/ws", "round and round, the origin included");
        assert_eq!(next_url(&mut list, false), "ws://b:8081/ws");
        assert_eq!(next_url(&mut list, true), "ws://b:8081/ws", "welcomed on b: b again after a drop");
    }

    #[test]
    fn a_single_tracker_is_always_retried() {
        let mut list = TrackerList::new(["ws://a/ws"]).unwrap();
        list.learn(&[], |_| true);
        for welcomed in [true, false, false] {
            assert_eq!(next_url(&mut list, welcomed), "ws://a/ws");
        }
    }

    #[test]
    fn the_status_line_names_the_node_by_host_and_port() {
        assert_eq!(node_label("wss://pp.example.org/ws"), "pp.example.org");
        assert_eq!(node_label("ws://127.0.0.1:8081/ws?x=1"), "127.0.0.1:8081");
        assert_eq!(node_label("ws://[::1]:9/ws"), "[::1]:9");
    }
}
