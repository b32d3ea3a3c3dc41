//! Tiny network probes the namespace tests run inside hosts of a [`e2e::Topology`] (with
//! `Topology::command`), to see a network the way a peer would: who reaches whom, and which
//! source address and port a NAT gives a flow.
//!
//! ```text
//! pp-netprobe udp-echo PORT...           answer each datagram with the source "ip:port" it came from
//! pp-netprobe tcp-echo PORT              write the connection's source "ip:port", then close
//! pp-netprobe udp-probe LPORT DEST...    from local port LPORT, ask each DEST (ip:port) how it sees us
//! pp-netprobe tcp-probe DEST [MS]        connect to DEST (timeout MS, default 2000), print its answer
//! ```
//!
//! Echo servers print `ready` once bound and run until killed. Probes print one line
//! `DEST SEEN` per destination and exit 0, or print the error and exit 1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["udp-echo", ports @ ..] if !ports.is_empty() => udp_echo(ports),
        ["tcp-echo", port] => tcp_echo(port),
        ["udp-probe", local, dests @ ..] if !dests.is_empty() => udp_probe(local, dests),
        ["tcp-probe", dest] => tcp_probe(dest, "2000"),
        ["tcp-probe", dest, ms] => tcp_probe(dest, ms),
        _ => {
            eprintln!(
                "usage: pp-netprobe udp-echo PORT... | tcp-echo PORT | udp-probe LPORT DEST... | tcp-probe DEST [MS]"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        println!("error: {e}");
        eprintln!("pp-netprobe: {e}");
        std::process::exit(1);
    }
}

type Res = Result<(), String>;

fn port(p: &str) -> Result<u16, String> {
    p.parse().map_err(|_| format!("bad port {p:?}"))
}

fn addr(a: &str) -> Result<SocketAddr, String> {
    a.parse().map_err(|_| format!("bad address {a:?} (want ip:port)"))
}

fn udp_echo(ports: &[&str]) -> Res {
    let socks = ports
        .iter()
        .map(|p| UdpSocket::bind(("0.0.0.0", port(p)?)).map_err(|e| format!("bind udp {p}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    println!("ready");
    let threads: Vec<_> = socks
        .into_iter()
        .map(|s| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(from.to_string().as_bytes(), from);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn tcp_echo(p: &str) -> Res {
    let l = TcpListener::bind(("0.0.0.0", port(p)?)).map_err(|e| format!("bind tcp {p}: {e}"))?;
    println!("ready");
    for conn in l.incoming().flatten() {
        let mut conn = conn;
        if let Ok(from) = conn.peer_addr() {
            let _ = conn.write_all(from.to_string().as_bytes());
        }
    }
    Ok(())
}

fn udp_probe(local: &str, dests: &[&str]) -> Res {
    let s = UdpSocket::bind(("0.0.0.0", port(local)?)).map_err(|e| format!("bind udp {local}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(300))).map_err(|e| e.to_string())?;
    for d in dests {
        let dest = addr(d)?;
        let mut seen = None;
        'tries: for _ in 0..10 {
            s.send_to(b"who am i", dest).map_err(|e| format!("send to {dest}: {e}"))?;
            let mut buf = [0u8; 100];
            // Skip stray answers to earlier tries of earlier destinations.
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                if from == dest {
                    seen = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                    break 'tries;
                }
            }
        }
        let seen = seen.ok_or_else(|| format!("no answer from {dest} over UDP"))?;
        println!("{dest} {seen}");
    }
    Ok(())
}

fn tcp_probe(d: &str, ms: &str) -> Res {
    let dest = addr(d)?;
    let ms: u64 = ms.parse().map_err(|_| format!("bad timeout {ms:?}"))?;
    let mut c =
        TcpStream::connect_timeout(&dest, Duration::from_millis(ms)).map_err(|e| format!("connect {dest}: {e}"))?;
    c.set_read_timeout(Some(Duration::from_millis(ms))).map_err(|e| e.to_string())?;
    let mut seen = String::new();
    c.read_to_string(&mut seen).map_err(|e| format!("read from {dest}: {e}"))?;
    println!("{dest} {seen}");
    Ok(())
}
