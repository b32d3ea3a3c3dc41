//! The task that owns one `str0m::Rtc` and its UDP sockets (one per local address): polls
//! outputs, feeds inputs (datagrams, timeouts, commands), asks the STUN servers for this
//! link's public addresses and trickles them as candidates, and moves data-channel messages
//! in and out.

use super::net::{classify, Iface};
use super::{CHANNEL_LABEL, SCTP_BUFFER};
use anyhow::{anyhow, Context};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, CandidateKind, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use swarm_core::stun::{is_stun, BindingRequest};
use swarm_core::{LinkPath, Signal};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What a link reports to its owner.
#[derive(Debug)]
pub enum LinkEvent {
    /// Signalling to send to the remote peer through the tracker.
    Signal(Signal),
    /// The data channel is open: messages can flow, along this path.
    Open(LinkPath),
    /// One binary message from the remote peer.
    Message(Vec<u8>),
    /// The connection ended (closed, failed, or timed out).
    Closed(String),
}

enum Command {
    Signal(Signal),
    Close,
}

/// Where and how a link gathers candidates: the local addresses and the STUN servers.
#[derive(Debug, Clone, Default)]
pub struct RtcEnv {
    pub ifaces: Vec<Iface>,
    pub stun_servers: Vec<SocketAddr>,
}

/// Sends messages over a link's data channel with backpressure: `send` waits while the
/// channel's buffers are full.
#[derive(Clone)]
pub struct LinkSender {
    data: mpsc::Sender<Vec<u8>>,
}

impl LinkSender {
    pub async fn send(&self, msg: Vec<u8>) -> anyhow::Result<()> {
        self.data.send(msg).await.map_err(|_| anyhow!("link closed"))
    }
}

/// Delivers signals from the tracker to a link.
#[derive(Clone)]
pub struct SignalHandle(mpsc::UnboundedSender<Command>);

impl SignalHandle {
    pub fn deliver(&self, s: Signal) {
        let _ = self.0.send(Command::Signal(s));
    }
}

/// One WebRTC connection with one data channel.
pub struct Link {
    commands: mpsc::UnboundedSender<Command>,
    pub sender: LinkSender,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
}

fn new_rtc() -> Rtc {
    let mut config = RtcConfig::new().set_sctp_max_buffered_amount(SCTP_BUFFER);
    // Connectivity checks retried after 50 ms, doubling (str0m's default starts at 250 ms).
    // When two peers punch holes, the first checks each way are dropped by the other's NAT
    // until that side's own checks have gone out: a quick first retry opens the path in
    // about a round trip instead of a quarter second more.
    config.set_initial_stun_rto(STUN_INITIAL_RTO);
    config.set_max_stun_retransmits(12);
    config.build(Instant::now())
}

/// First retransmission delay of ICE connectivity checks (see [`new_rtc`]).
const STUN_INITIAL_RTO: Duration = Duration::from_millis(50);

/// UDP socket buffers: the default (about 200 KiB) dropped datagrams under load, and every
/// drop costs an SCTP retransmission (measured with `pp-bench`).
const UDP_BUFFER: usize = 4 * 1024 * 1024;
/// Datagrams read from the sockets in one go before their answers are sent.
const RECV_BATCH: usize = 64;
/// When a STUN request is sent again if unanswered (from the link's start); then given up.
const STUN_TRIES: [Duration; 4] =
    [Duration::ZERO, Duration::from_millis(200), Duration::from_millis(600), Duration::from_millis(1400)];
pub use swarm_core::wire::MAX_REMOTE_CANDIDATES;

struct Sock {
    socket: UdpSocket,
    local: SocketAddr,
    iface: Iface,
}

fn bind(iface: Iface) -> anyhow::Result<Sock> {
    let addr = SocketAddr::new(iface.ip, 0);
    let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)
        .context("creating a UDP socket")?;
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = sock.set_recv_buffer_size(UDP_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_BUFFER);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into()).with_context(|| format!("binding a UDP socket on {}", iface.ip))?;
    let socket = UdpSocket::from_std(sock.into())?;
    let local = socket.local_addr()?;
    Ok(Sock { socket, local, iface })
}

/// Binds a socket per address (those that fail are skipped) and adds their host candidates.
fn bind_all(env: &RtcEnv, rtc: &mut Rtc) -> anyhow::Result<Vec<Sock>> {
    let mut socks = Vec::new();
    let mut last_err = None;
    for iface in &env.ifaces {
        match bind(*iface) {
            Ok(s) => match Candidate::host(s.local, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                    socks.push(s);
                }
                Err(e) => last_err = Some(anyhow!("host candidate {}: {e}", s.local)),
            },
            Err(e) => last_err = Some(e),
        }
    }
    if socks.is_empty() {
        return Err(last_err.unwrap_or_else(|| anyhow!("no local address to use for WebRTC")));
    }
    Ok(socks)
}

/// Remote host candidates in an SDP, and how many candidates it has in all.
fn sdp_candidates(sdp: &str) -> (Vec<SocketAddr>, usize) {
    let hosts = sdp
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .filter_map(|l| Candidate::from_sdp_string(l).ok())
        .filter(|c| c.kind() == CandidateKind::Host)
        .map(|c| c.addr())
        .collect();
    (hosts, swarm_core::wire::sdp_candidate_count(sdp))
}

/// The media id of the (only) m-line in an SDP, for trickled candidates.
fn sdp_mid(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=mid:")).map(str::to_string)
}

impl Link {
    /// Starts a connection as the offerer; the offer comes out as the first event.
    pub fn offer(env: &RtcEnv) -> anyhow::Result<Self> {
        let mut rtc = new_rtc();
        let socks = bind_all(env, &mut rtc)?;
        let mut api = rtc.sdp_api();
        api.add_channel(CHANNEL_LABEL.into());
        let (offer, pending) = api.apply().ok_or_else(|| anyhow!("no offer to make"))?;
        let sdp = offer.to_sdp_string();
        let mid = sdp_mid(&sdp);
        Ok(Self::spawn(rtc, socks, env, Some(pending), Signal::Offer { sdp }, mid, Vec::new()))
    }

    /// Answers a remote offer; the answer comes out as the first event.
    pub fn answer(env: &RtcEnv, offer_sdp: &str) -> anyhow::Result<Self> {
        let (remote_hosts, count) = sdp_candidates(offer_sdp);
        anyhow::ensure!(
            count <= MAX_REMOTE_CANDIDATES,
            "the offer has {count} candidates (at most {MAX_REMOTE_CANDIDATES})"
        );
        let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| anyhow!("bad offer: {e}"))?;
        let mut rtc = new_rtc();
        let socks = bind_all(env, &mut rtc)?;
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| anyhow!("cannot accept offer: {e}"))?;
        let sdp = answer.to_sdp_string();
        let mid = sdp_mid(&sdp);
        Ok(Self::spawn(rtc, socks, env, None, Signal::Answer { sdp }, mid, remote_hosts))
    }

    fn spawn(
        rtc: Rtc,
        socks: Vec<Sock>,
        env: &RtcEnv,
        pending: Option<SdpPendingOffer>,
        first: Signal,
        mid: Option<String>,
        remote_hosts: Vec<SocketAddr>,
    ) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::channel(8);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let _ = ev_tx.send(LinkEvent::Signal(first));
        let start = Instant::now();
        // One binding request per local address and STUN server of the same family.
        let stun = socks
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                env.stun_servers
                    .iter()
                    .filter(move |srv| srv.is_ipv4() == s.local.is_ipv4() && !s.local.ip().is_loopback())
                    .map(move |srv| StunProbe {
                        sock: i,
                        server: *srv,
                        req: BindingRequest::new(),
                        tries: 0,
                        start,
                        done: false,
                    })
            })
            .collect();
        let remote_candidates = remote_hosts.len();
        let driver = Driver {
            rtc,
            socks,
            pending,
            channel: None,
            outgoing: VecDeque::new(),
            transmits: Vec::new(),
            events: ev_tx,
            stun,
            mid,
            remote_hosts,
            remote_candidates,
            last_data_route: None,
        };
        tokio::spawn(driver.run(cmd_rx, data_rx));
        Link { commands: cmd_tx, sender: LinkSender { data: data_tx }, events: ev_rx }
    }

    /// A cloneable handle that feeds signals to this link (for the node's signal router).
    pub fn signal_handle(&self) -> SignalHandle {
        SignalHandle(self.commands.clone())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close);
    }
}

/// One STUN binding request of this link: which socket asks which server.
struct StunProbe {
    sock: usize,
    server: SocketAddr,
    req: BindingRequest,
    tries: usize,
    start: Instant,
    done: bool,
}

impl StunProbe {
    fn next_at(&self) -> Option<Instant> {
        (!self.done).then(|| STUN_TRIES.get(self.tries).map(|d| self.start + *d)).flatten()
    }
}

struct Driver {
    rtc: Rtc,
    socks: Vec<Sock>,
    pending: Option<SdpPendingOffer>,
    channel: Option<ChannelId>,
    /// Messages taken from the sender but not yet accepted by str0m (at most one at a time).
    outgoing: VecDeque<Vec<u8>>,
    /// Datagrams to send after each poll: (from local address, to, bytes).
    transmits: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    events: mpsc::UnboundedSender<LinkEvent>,
    stun: Vec<StunProbe>,
    mid: Option<String>,
    /// The remote peer's host candidates (to name the path).
    remote_hosts: Vec<SocketAddr>,
    remote_candidates: usize,
    /// Where the last non-STUN datagram went (DTLS/SCTP go only to the nominated pair).
    last_data_route: Option<(SocketAddr, SocketAddr)>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>, mut data: mpsc::Receiver<Vec<u8>>) {
        let reason = match self.run_inner(&mut commands, &mut data).await {
            Ok(reason) => reason,
            Err(e) => format!("{e:#}"),
        };
        tracing::debug!(%reason, "link closed");
        let _ = self.events.send(LinkEvent::Closed(reason));
    }

    async fn run_inner(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        data: &mut mpsc::Receiver<Vec<u8>>,
    ) -> anyhow::Result<String> {
        let mut buf = vec![0u8; 2048];
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        // str0m's ICE agent schedules its checks only once it has seen the time: without this
        // first tick an answerer would only ever answer checks, never send its own, and no
        // hole could be punched from its side.
        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
        loop {
            let deadline = self.poll()?;
            self.send_stun();
            self.flush_transmits().await;
            let Some(deadline) = deadline else {
                return Ok("connection ended".into());
            };
            let deadline = self.stun.iter().filter_map(StunProbe::next_at).fold(deadline, Instant::min);
            sleep.as_mut().reset(tokio::time::Instant::from_std(deadline));
            let can_take = self.channel.is_some() && self.outgoing.is_empty();
            tokio::select! {
                (i, r) = recv_any(&self.socks, &mut buf) => {
                    if let Ok((n, source)) = r {
                        self.receive(i, n, &buf, source)?;
                    }
                    // Take whatever else has arrived before sending answers: fewer wake-ups.
                    'batch: for _ in 1..RECV_BATCH {
                        for i in 0..self.socks.len() {
                            if let Ok((n, source)) = self.socks[i].socket.try_recv_from(&mut buf) {
                                self.poll()?;
                                self.receive(i, n, &buf, source)?;
                                continue 'batch;
                            }
                        }
                        break;
                    }
                }
                _ = &mut sleep => {
                    self.rtc.handle_input(Input::Timeout(Instant::now()))?;
                }
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Close) => {
                        self.rtc.disconnect();
                        return Ok("closed locally".into());
                    }
                    Some(Command::Signal(s)) => {
                        self.on_signal(s)?;
                        // New remote candidates: let the agent plan checks for them now.
                        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
                    }
                },
                Some(m) = data.recv(), if can_take => {
                    self.outgoing.push_back(m);
                    self.flush()?;
                }
            }
        }
    }

    /// Sends the datagrams str0m produced, each from the socket of its local address. A send
    /// error (e.g. an unreachable address) loses one datagram; ICE and SCTP retransmit.
    async fn flush_transmits(&mut self) {
        for (from, to, bytes) in self.transmits.drain(..) {
            let sock = self
                .socks
                .iter()
                .find(|s| s.local == from)
                .or_else(|| self.socks.iter().find(|s| s.local.is_ipv4() == to.is_ipv4()));
            if let Some(s) = sock {
                let _ = s.socket.send_to(&bytes, to).await;
            }
        }
    }

    /// Queues the STUN requests that are due.
    fn send_stun(&mut self) {
        let now = Instant::now();
        for p in &mut self.stun {
            if p.next_at().is_some_and(|t| t <= now) {
                p.tries += 1;
                self.transmits.push((self.socks[p.sock].local, p.server, p.req.bytes().to_vec()));
            }
        }
    }

    fn receive(&mut self, sock: usize, n: usize, buf: &[u8], source: SocketAddr) -> anyhow::Result<()> {
        let bytes = &buf[..n];
        if is_stun(bytes) && self.on_stun_answer(sock, bytes, source) {
            // A new local candidate: let the agent plan checks from it now.
            self.rtc.handle_input(Input::Timeout(Instant::now()))?;
            return Ok(());
        }
        let Ok(contents) = bytes.try_into() else { return Ok(()) };
        let destination = self.socks[sock].local;
        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination, contents });
        // Not `Rtc::accepts`: that is for many connections on one socket, and it turns away
        // DTLS from an address whose checks have not succeeded *yet* on this side, which at
        // the start of a hole-punched path is the peer's first flight (then a 1 s DTLS
        // retransmission). Every datagram on these sockets is this connection's.
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(%source, "datagram refused: {e}");
        }
        Ok(())
    }

    /// An answer from a STUN server: this socket's public address becomes a server-reflexive
    /// candidate, trickled to the remote peer. Returns whether the datagram was one.
    fn on_stun_answer(&mut self, sock: usize, bytes: &[u8], source: SocketAddr) -> bool {
        let Some(p) = self.stun.iter_mut().find(|p| p.sock == sock && p.server == source && !p.done) else {
            return false;
        };
        let Some(mapped) = p.req.mapped_address(bytes) else { return false };
        p.done = true;
        let base = self.socks[sock].local;
        if mapped == base {
            return true; // no NAT on this path: the host candidate says it all
        }
        tracing::debug!(%base, %mapped, server = %source, "server-reflexive address");
        let Ok(c) = Candidate::server_reflexive(mapped, base, "udp") else { return true };
        if let Some(c) = self.rtc.add_local_candidate(c) {
            let candidate = c.to_sdp_string().trim_start_matches("a=").to_string();
            let _ = self.events.send(LinkEvent::Signal(Signal::Candidate { candidate, mid: self.mid.clone() }));
        }
        true
    }

    fn on_signal(&mut self, s: Signal) -> anyhow::Result<()> {
        match s {
            Signal::Answer { sdp } => {
                let pending = self.pending.take().ok_or_else(|| anyhow!("answer without an offer"))?;
                let (hosts, count) = sdp_candidates(&sdp);
                anyhow::ensure!(
                    count <= MAX_REMOTE_CANDIDATES,
                    "the answer has {count} candidates (at most {MAX_REMOTE_CANDIDATES})"
                );
                self.remote_candidates = count;
                self.remote_hosts = hosts;
                let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| anyhow!("bad answer: {e}"))?;
                self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| anyhow!("answer refused: {e}"))?;
            }
            Signal::Candidate { candidate, .. } => {
                if self.remote_candidates >= MAX_REMOTE_CANDIDATES {
                    tracing::debug!("ignoring a remote candidate beyond {MAX_REMOTE_CANDIDATES}");
                    return Ok(());
                }
                let c = candidate.trim_start_matches("a=").trim_start_matches("candidate:");
                // Browsers hide host addresses behind mDNS names str0m cannot use; the remote
                // address is learnt from its connectivity checks instead (peer-reflexive).
                if let Ok(c) = Candidate::from_sdp_string(&format!("candidate:{c}")) {
                    self.remote_candidates += 1;
                    if c.kind() == CandidateKind::Host {
                        self.remote_hosts.push(c.addr());
                    }
                    self.rtc.add_remote_candidate(c);
                }
            }
            Signal::Offer { .. } => tracing::debug!("ignoring a second offer on an open link"),
            Signal::Close { reason } => anyhow::bail!("remote closed: {reason}"),
            Signal::Gone => anyhow::bail!("the peer is not connected to the tracker"),
        }
        Ok(())
    }

    /// Hands queued messages to str0m while it accepts them.
    fn flush(&mut self) -> anyhow::Result<()> {
        let Some(id) = self.channel else {
            return Ok(());
        };
        let Some(mut ch) = self.rtc.channel(id) else {
            return Ok(());
        };
        while let Some(front) = self.outgoing.front() {
            if ch.write(true, front)? {
                self.outgoing.pop_front();
            } else {
                break;
            }
        }
        Ok(())
    }

    /// The path data takes now (after the channel opened).
    fn path(&self) -> LinkPath {
        let Some((from, to)) = self.last_data_route else { return LinkPath::DirectHost };
        let iface = self.socks.iter().find(|s| s.local == from).map_or(self.socks[0].iface, |s| s.iface);
        classify(iface, to, &self.remote_hosts)
    }

    /// Drains str0m's outputs; returns the next deadline, or `None` when the connection is over.
    fn poll(&mut self) -> anyhow::Result<Option<Instant>> {
        loop {
            if !self.rtc.is_alive() {
                return Ok(None);
            }
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(Some(t)),
                Output::Transmit(t) => {
                    if !is_stun(&t.contents) {
                        self.last_data_route = Some((t.source, t.destination));
                    }
                    self.transmits.push((t.source, t.destination, t.contents.to_vec()));
                }
                Output::Event(e) => match e {
                    Event::ChannelOpen(id, _label) => {
                        self.channel = Some(id);
                        if let Some(mut ch) = self.rtc.channel(id) {
                            ch.set_buffered_amount_low_threshold(SCTP_BUFFER / 2);
                        }
                        let path = self.path();
                        tracing::debug!(path = path.as_str(), route = ?self.last_data_route, "data channel open");
                        let _ = self.events.send(LinkEvent::Open(path));
                    }
                    Event::ChannelData(d) => {
                        let _ = self.events.send(LinkEvent::Message(d.data));
                    }
                    Event::ChannelBufferedAmountLow(_) => self.flush()?,
                    Event::ChannelClose(_) => return Ok(None),
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => return Ok(None),
                    _ => {}
                },
            }
        }
    }
}

/// The next datagram on any of `socks`: (socket index, result).
async fn recv_any(socks: &[Sock], buf: &mut [u8]) -> (usize, std::io::Result<(usize, SocketAddr)>) {
    std::future::poll_fn(|cx| {
        for (i, s) in socks.iter().enumerate() {
            let mut rb = ReadBuf::new(buf);
            match s.socket.poll_recv_from(cx, &mut rb) {
                Poll::Ready(Ok(from)) => return Poll::Ready((i, Ok((rb.filled().len(), from)))),
                Poll::Ready(Err(e)) => return Poll::Ready((i, Err(e))),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_in_an_sdp_are_counted_and_hosts_kept() {
        let sdp = "v=0\r\na=mid:0\r\na=candidate:1 1 udp 2130706175 10.0.0.2 5000 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 198.51.100.3 6000 typ srflx raddr 0.0.0.0 rport 0\r\n";
        let (hosts, n) = sdp_candidates(sdp);
        assert_eq!(n, 2);
        assert_eq!(hosts, vec!["10.0.0.2:5000".parse().unwrap()]);
        assert_eq!(sdp_mid(sdp).as_deref(), Some("0"));
    }

    #[test]
    fn an_offer_with_too_many_candidates_is_refused() {
        let mut sdp = String::from("v=0\r\na=mid:0\r\n");
        for i in 0..=MAX_REMOTE_CANDIDATES {
            sdp.push_str(&format!("a=candidate:{i} 1 udp 2130706175 10.0.0.{i} 5000 typ host\r\n"));
        }
        let env = RtcEnv { ifaces: vec![Iface { ip: "127.0.0.1".parse().unwrap(), prefix: 8 }], stun_servers: vec![] };
        let err = Link::answer(&env, &sdp).err().expect("refused").to_string();
        assert!(err.contains("candidates"), "{err}");
    }
}
