//! The task that owns one `str0m::Rtc` and its UDP socket: polls outputs, feeds inputs
//! (datagrams, timeouts, commands) and moves data-channel messages in and out.

use super::{CHANNEL_LABEL, SCTP_BUFFER};
use anyhow::{anyhow, Context};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use swarm_core::Signal;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What a link reports to its owner.
#[derive(Debug)]
pub enum LinkEvent {
    /// Signalling to send to the remote peer through the tracker.
    Signal(Signal),
    /// The data channel is open: messages can flow.
    Open,
    /// One binary message from the remote peer.
    Message(Vec<u8>),
    /// The connection ended (closed, failed, or timed out).
    Closed(String),
}

enum Command {
    Signal(Signal),
    Close,
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
    RtcConfig::new().set_sctp_max_buffered_amount(SCTP_BUFFER).build(Instant::now())
}

/// UDP socket buffers: the default (about 200 KiB) dropped datagrams under load, and every
/// drop costs an SCTP retransmission (measured with `pp-bench`).
const UDP_BUFFER: usize = 4 * 1024 * 1024;
/// Datagrams read from the socket in one go before their answers are sent.
const RECV_BATCH: usize = 64;

async fn bind(ip: IpAddr) -> anyhow::Result<(UdpSocket, Candidate)> {
    let addr = SocketAddr::new(ip, 0);
    let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)
        .context("creating a UDP socket")?;
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = sock.set_recv_buffer_size(UDP_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_BUFFER);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into()).context("binding a UDP socket")?;
    let socket = UdpSocket::from_std(sock.into())?;
    let addr = socket.local_addr()?;
    let cand = Candidate::host(addr, "udp").map_err(|e| anyhow!("host candidate {addr}: {e}"))?;
    Ok((socket, cand))
}

impl Link {
    /// Starts a connection as the offerer; the offer comes out as the first event.
    pub async fn offer(ip: IpAddr) -> anyhow::Result<Self> {
        let (socket, cand) = bind(ip).await?;
        let mut rtc = new_rtc();
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        api.add_channel(CHANNEL_LABEL.into());
        let (offer, pending) = api.apply().ok_or_else(|| anyhow!("no offer to make"))?;
        let first = Signal::Offer { sdp: offer.to_sdp_string() };
        Ok(Self::spawn(rtc, socket, Some(pending), first))
    }

    /// Answers a remote offer; the answer comes out as the first event.
    pub async fn answer(ip: IpAddr, offer_sdp: &str) -> anyhow::Result<Self> {
        let offer = SdpOffer::from_sdp_string(offer_sdp).map_err(|e| anyhow!("bad offer: {e}"))?;
        let (socket, cand) = bind(ip).await?;
        let mut rtc = new_rtc();
        rtc.add_local_candidate(cand);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| anyhow!("cannot accept offer: {e}"))?;
        let first = Signal::Answer { sdp: answer.to_sdp_string() };
        Ok(Self::spawn(rtc, socket, None, first))
    }

    fn spawn(rtc: Rtc, socket: UdpSocket, pending: Option<SdpPendingOffer>, first: Signal) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (data_tx, data_rx) = mpsc::channel(8);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let _ = ev_tx.send(LinkEvent::Signal(first));
        let driver = Driver {
            rtc,
            socket,
            pending,
            channel: None,
            outgoing: VecDeque::new(),
            transmits: Vec::new(),
            events: ev_tx,
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

struct Driver {
    rtc: Rtc,
    socket: UdpSocket,
    pending: Option<SdpPendingOffer>,
    channel: Option<ChannelId>,
    /// Messages taken from the sender but not yet accepted by str0m (at most one at a time).
    outgoing: VecDeque<Vec<u8>>,
    /// Datagrams str0m produced, sent after each poll.
    transmits: Vec<(SocketAddr, Vec<u8>)>,
    events: mpsc::UnboundedSender<LinkEvent>,
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
        let local = self.socket.local_addr()?;
        let sleep = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            let deadline = self.poll()?;
            for (to, bytes) in self.transmits.drain(..) {
                // A send error (e.g. an unreachable address) loses one datagram; ICE and SCTP
                // retransmit.
                let _ = self.socket.send_to(&bytes, to).await;
            }
            let Some(deadline) = deadline else {
                return Ok("connection ended".into());
            };
            sleep.as_mut().reset(tokio::time::Instant::from_std(deadline));
            let can_take = self.channel.is_some() && self.outgoing.is_empty();
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let (n, source) = r.context("UDP receive")?;
                    self.receive(&buf[..n], source, local)?;
                    // Take whatever else has arrived before sending answers: fewer wake-ups.
                    for _ in 1..RECV_BATCH {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, source)) => {
                                self.poll()?;
                                self.receive(&buf[..n], source, local)?;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(anyhow::Error::new(e).context("UDP receive")),
                        }
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
                    Some(Command::Signal(s)) => self.on_signal(s)?,
                },
                Some(m) = data.recv(), if can_take => {
                    self.outgoing.push_back(m);
                    self.flush()?;
                }
            }
        }
    }

    fn receive(&mut self, bytes: &[u8], source: SocketAddr, local: SocketAddr) -> anyhow::Result<()> {
        let Ok(contents) = bytes.try_into() else { return Ok(()) };
        let input =
            Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: local, contents });
        if self.rtc.accepts(&input) {
            self.rtc.handle_input(input)?;
        }
        Ok(())
    }

    fn on_signal(&mut self, s: Signal) -> anyhow::Result<()> {
        match s {
            Signal::Answer { sdp } => {
                let pending = self.pending.take().ok_or_else(|| anyhow!("answer without an offer"))?;
                let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| anyhow!("bad answer: {e}"))?;
                self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| anyhow!("answer refused: {e}"))?;
            }
            Signal::Candidate { candidate, .. } => {
                let c = candidate.trim_start_matches("a=").trim_start_matches("candidate:");
                // Browsers hide host addresses behind mDNS names str0m cannot use; the remote
                // address is learnt from its connectivity checks instead (peer-reflexive).
                if let Ok(c) = Candidate::from_sdp_string(&format!("candidate:{c}")) {
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

    /// Drains str0m's outputs; returns the next deadline, or `None` when the connection is over.
    fn poll(&mut self) -> anyhow::Result<Option<Instant>> {
        loop {
            if !self.rtc.is_alive() {
                return Ok(None);
            }
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(Some(t)),
                Output::Transmit(t) => self.transmits.push((t.destination, t.contents.to_vec())),
                Output::Event(e) => match e {
                    Event::ChannelOpen(id, _label) => {
                        self.channel = Some(id);
                        if let Some(mut ch) = self.rtc.channel(id) {
                            ch.set_buffered_amount_low_threshold(SCTP_BUFFER / 2);
                        }
                        let _ = self.events.send(LinkEvent::Open);
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
