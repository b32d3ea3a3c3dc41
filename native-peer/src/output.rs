//! What `pp-peer` commands print for people when `--json` is not given: sizes with units,
//! names before ids, one line per file. The `--json` output is the result value as it is;
//! this module renders the same value as text.

use pp_cli::size::human;
use serde_json::Value;
use std::fmt::Write;

/// Which command produced a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Put,
    Get,
    Search,
    Ls,
    Status,
    Scrub,
    Leave,
    Rm,
    Limit,
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn plural(k: u64, one: &str) -> String {
    if k == 1 {
        format!("1 {one}")
    } else {
        format!("{k} {one}s")
    }
}

/// One line per file: name, size, copies (or chunks held here), id.
fn file_lines(out: &mut String, files: &[Value]) {
    let width = files.iter().map(|f| s(&f["name"]).chars().count()).max().unwrap_or(0).min(40);
    for f in files {
        let extra = match (f.get("min_holders"), f.get("chunks_held")) {
            (Some(h), _) => plural(n(h), "copy").replace("copys", "copies"),
            (_, Some(held)) => format!("{}/{} chunks here", n(held), n(&f["chunks"])),
            _ => plural(n(&f["chunks"]), "chunk"),
        };
        let _ =
            writeln!(out, "{:<width$}  {:>10}  {:<14}  {}", s(&f["name"]), human(n(&f["size"])), extra, s(&f["id"]));
    }
}

/// The text for a command's result.
pub fn render(kind: Kind, v: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let files = v.get("files").and_then(Value::as_array).unwrap_or(&empty);
    match kind {
        Kind::Put => {
            for f in files {
                let _ = writeln!(out, "Shared {} ({}): {}", s(&f["name"]), human(n(&f["size"])), s(&f["link"]));
            }
        }
        Kind::Get => {
            let secs = v["seconds"].as_f64().unwrap_or(0.0);
            let size = human(n(&v["size"]));
            if v["output"] == "-" {
                let _ = writeln!(out, "Wrote {} to stdout ({size} in {secs:.1} s)", s(&v["name"]));
            } else {
                let _ = writeln!(out, "Saved {} ({size} in {secs:.1} s)", s(&v["output"]));
            }
        }
        Kind::Search => {
            if files.is_empty() {
                out.push_str("No files found.\n");
            }
            file_lines(&mut out, files);
        }
        Kind::Ls => {
            let swarm = v["swarm"].as_array().unwrap_or(&empty);
            let local = v["local"].as_array().unwrap_or(&empty);
            let _ = writeln!(out, "In the swarm: {}", plural(swarm.len() as u64, "file"));
            file_lines(&mut out, swarm);
            let _ = writeln!(
                out,
                "On this peer: {}, {} held",
                plural(local.len() as u64, "file"),
                plural(n(&v["chunks_held"]), "chunk")
            );
            file_lines(&mut out, local);
        }
        Kind::Status => {
            let links = v["links"].as_array().map_or(0, Vec::len) as u64;
            let _ = writeln!(out, "Peer      {}", s(&v["peer_id"]));
            if let Some(t) = v["tracker"].as_str() {
                let how = if v["tracker_connected"] == false { " (reconnecting)" } else { "" };
                let _ = writeln!(out, "Tracker   {t}{how}");
            }
            let _ = writeln!(
                out,
                "Storage   {} of {} ({}, {})",
                human(n(&v["storage_used"])),
                human(n(&v["storage_capacity"])),
                plural(n(&v["chunks"]), "chunk"),
                plural(n(&v["files"]), "file")
            );
            let _ = writeln!(
                out,
                "Received  {} over data channels, {} through the relay",
                human(n(&v["data_channel_bytes_received"])),
                human(n(&v["relay_bytes_received"]))
            );
            let _ = writeln!(
                out,
                "Sent      {} over data channels, {} through the relay",
                human(n(&v["data_channel_bytes_sent"])),
                human(n(&v["relay_bytes_sent"]))
            );
            let limit = match v["upload_limit"].as_u64() {
                Some(l) => format!("limit {}/s", human(l)),
                None => "no limit".to_string(),
            };
            let _ = writeln!(out, "Upload    {}/s now, {limit}", human(n(&v["upload_rate"])));
            let _ = writeln!(out, "Links     {} open", links);
            if n(&v["bad_chunks_refused"]) > 0 {
                let _ = writeln!(
                    out,
                    "Refused   {} that did not match their id",
                    plural(n(&v["bad_chunks_refused"]), "bad chunk")
                );
            }
        }
        Kind::Limit => {
            let _ = match v["upload_limit"].as_u64() {
                Some(l) => writeln!(out, "Upload limit: {}/s", human(l)),
                None => writeln!(out, "Upload limit: none"),
            };
        }
        Kind::Scrub => {
            let dropped = v["dropped"].as_array().map_or(0, Vec::len) as u64;
            let verdict = if dropped == 0 {
                "all sound".to_string()
            } else {
                format!("{} corrupt, dropped and reported", plural(dropped, "chunk"))
            };
            let _ = writeln!(out, "Checked {}: {verdict}", plural(n(&v["checked"]), "chunk"));
        }
        Kind::Leave => {
            let stranded = n(&v["stranded_chunks"]);
            if stranded == 0 {
                out.push_str("Left the swarm; every chunk has copies on other peers.\n");
            } else {
                let _ = writeln!(out, "Left the swarm; {} had no other copy.", plural(stranded, "chunk"));
            }
        }
        Kind::Rm => match v["name"].as_str() {
            Some(name) => {
                let _ = writeln!(out, "Removed {name} ({}) from the swarm", s(&v["removed"]));
            }
            None => {
                let _ = writeln!(out, "Removed {} from the swarm", s(&v["removed"]));
            }
        },
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn people_get_units_and_links() {
        let put = json!({"files": [{"id": "ab", "name": "a.bin", "size": 3 << 20, "chunks": 3,
            "link": "http://t/#/file/ab"}]});
        assert_eq!(render(Kind::Put, &put), "Shared a.bin (3.0 MiB): http://t/#/file/ab\n");
        let search = json!({"files": [{"id": "ab", "name": "a.bin", "size": 1536, "chunks": 1, "min_holders": 1}]});
        let text = render(Kind::Search, &search);
        assert!(text.contains("1.5 KiB") && text.contains("1 copy") && text.contains("ab"), "{text}");
        assert_eq!(render(Kind::Search, &json!({"files": []})), "No files found.\n");
        let status = json!({"peer_id": "p1", "storage_used": 1 << 20, "storage_capacity": 10u64 << 30,
            "chunks": 4, "files": 1, "links": [], "tracker": "ws://t2/ws", "tracker_connected": true});
        let text = render(Kind::Status, &status);
        assert!(text.contains("1.0 MiB of 10.0 GiB (4 chunks, 1 file)"), "{text}");
        assert!(text.contains("Tracker   ws://t2/ws\n"), "which tracker node: {text}");
        assert!(!text.contains('{'), "no raw JSON: {text}");
    }
}
