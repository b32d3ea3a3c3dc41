//! Share links on the command line (the format is `swarm_core::share`): the link `put` prints
//! for a file, the tracker a link names (a `get` with a link and no configured tracker uses
//! it), and where a link to a private file goes ([`get_private_file`]).

use crate::control::ProgressSink;
use crate::node::Node;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use swarm_core::share::{web_address, ShareLink};
use swarm_core::FileId;

/// The share link of a public file on the tracker at `tracker_ws` (`ws://h:p/ws` gives
/// `http://h:p/#/file/{id}`).
pub fn share_link(tracker_ws: &str, file: FileId) -> String {
    ShareLink { web: Some(web_address(tracker_ws)), file, secret: None }.to_string()
}

/// The tracker websocket URL behind a link's web address (`http://h:p` → `ws://h:p/ws`,
/// `https://h/pp` → `wss://h/pp/ws`), and the join token the address carries, if any.
pub fn tracker_of(web: &str) -> Option<(String, Option<String>)> {
    let (base, query) = web.split_once('?').map_or((web, None), |(b, q)| (b, Some(q)));
    let base = base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}/ws")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}/ws")
    } else {
        return None;
    };
    let token = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|p| p.strip_prefix("token="))
        .map(|t| t.trim_end_matches('/').to_string())
        .filter(|t| !t.is_empty());
    Some((ws, token))
}

/// Downloads a private file (a link with a key or a passphrase). Not supported yet: the
/// encrypted-share work replaces this function.
pub async fn get_private_file(
    _node: &Arc<Node>,
    _link: &ShareLink,
    _output: Option<PathBuf>,
    _force: bool,
    _dir: Option<PathBuf>,
    _progress: ProgressSink,
) -> anyhow::Result<Value> {
    anyhow::bail!("private files are not supported yet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::share::Target;

    #[test]
    fn a_put_link_leads_back_to_the_file_and_its_tracker() {
        let id = FileId([7; 32]);
        let link = share_link("ws://127.0.0.1:8080/ws", id);
        assert_eq!(link, format!("http://127.0.0.1:8080/#/file/{}", id.to_hex()));
        let Ok(Target::Link(parsed)) = Target::parse(&link) else { panic!("{link}") };
        assert_eq!(parsed.file, id);
        let web = parsed.web.unwrap();
        assert_eq!(tracker_of(&web), Some(("ws://127.0.0.1:8080/ws".to_string(), None)));
        assert_eq!(
            tracker_of("https://pp.example/swarm/?token=abc"),
            Some(("wss://pp.example/swarm/ws".to_string(), Some("abc".to_string())))
        );
        assert_eq!(tracker_of("ftp://x"), None);
    }
}
