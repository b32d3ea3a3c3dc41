//! The edges of a real `pp-peer run --http` gateway: requests naming a foreign host (DNS
//! rebinding) or coming from another site's page are refused with 403 and the reason, the
//! right ones are served, and slow or idle connections are closed after the header timeout.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends `head` (request line and headers, no blank line) to the gateway; the status and body.
fn request(port: u16, head: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
}

/// Whether the server closes `s` within `wait` (reading whatever it sends).
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) if start.elapsed() < wait => {}
            Ok(_) => return false,
            Err(e) => return !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

#[test]
fn the_gateway_serves_only_its_own_host_and_origin_and_closes_slow_connections() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let flags = ["--http", "127.0.0.1:0", "--http-host", "media.lan", "--http-header-timeout", "300ms"];
    let gw = Peer::start("gw", &tracker, root.path(), &flags, &[]);
    let port = gw.http.expect("gateway port");

    for ok in [
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
        format!("GET /healthz HTTP/1.1\r\nHost: localhost:{port}"),
        "GET /healthz HTTP/1.1\r\nHost: media.lan".to_string(),
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}"),
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nSec-Fetch-Site: none"),
    ] {
        assert_eq!(request(port, &ok), (200, "ok\n".to_string()), "{ok}");
    }
    // DNS rebinding: the page's own name in Host.
    let (status, body) = request(port, &format!("GET /healthz HTTP/1.1\r\nHost: evil.example:{port}"));
    assert_eq!(status, 403);
    assert!(body.contains("evil.example") && body.contains("--http-host"), "{body}");
    // A page of another site: its Origin, or (for <video>/<img>, no Origin) Sec-Fetch-Site.
    let (status, body) =
        request(port, &format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://evil.example"));
    assert_eq!(status, 403);
    assert!(body.contains("another origin (https://evil.example)"), "{body}");
    let id = "ab".repeat(32);
    let (status, body) =
        request(port, &format!("GET /files/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nSec-Fetch-Site: cross-site"));
    assert_eq!(status, 403, "{body}");

    // A header trickled byte by byte is cut off at the header timeout; so is an idle
    // kept-alive connection.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ").unwrap();
    let start = Instant::now();
    let mut cut = false;
    while start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        if slow.write_all(b"a").is_err() {
            cut = true;
            break;
        }
    }
    assert!(cut || closed_within(&mut slow, Duration::from_millis(500)), "a trickled header is cut off");
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(3)), "an idle kept-alive connection is closed");
}
