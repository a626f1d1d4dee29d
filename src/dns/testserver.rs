//! A small authoritative DNS server for tests and `volley demo`: serves one zone
//! given as zone-file text, over UDP and TCP, on loopback only.
//!
//! It answers from the zone (following CNAMEs inside it), NXDOMAIN for names not
//! in it and NOERROR/NODATA for names that exist without the type asked, with the
//! zone's SOA in the authority section of negative answers (so resolvers cache
//! them for its minimum TTL). Tests can make names answer SERVFAIL or not answer at
//! all, delay every answer, swap the zone, and count the queries received.
//!
//! Names in the zone text are relative to the root unless `$ORIGIN` says
//! otherwise, so `mx1.example.net` and `mx1.example.net.` are the same name.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// Why the test server could not start or load a zone.
#[derive(Debug, Error)]
pub enum TestDnsError {
    /// The zone text does not parse.
    #[error("zone text: {0}")]
    Zone(String),
    /// Binding the sockets failed.
    #[error("binding the test DNS server: {0}")]
    Io(#[from] io::Error),
    /// The server only listens on loopback addresses.
    #[error("test DNS server must bind a loopback address, not {0}")]
    NotLoopback(SocketAddr),
}

/// A running test DNS server. Stops (its tasks are aborted) when dropped.
pub struct TestDnsServer {
    /// Where it listens, UDP and TCP on the same port.
    addr: SocketAddr,
    /// Zone and test controls, shared with the socket tasks.
    state: Arc<State>,
    /// The UDP and TCP accept loops.
    tasks: Vec<JoinHandle<()>>,
}

/// The records of one zone, indexed for answering.
#[derive(Default)]
struct Zone {
    /// (name, type) -> records.
    records: HashMap<(LowerName, RecordType), Vec<Record>>,
    /// Every name that owns at least one record.
    names: HashSet<LowerName>,
    /// The SOA, put in the authority section of negative answers.
    soa: Option<Record>,
}

#[derive(Default)]
struct State {
    /// The zone served; replaced whole by `set_zone`.
    zone: RwLock<Zone>,
    /// Names (lowercase, no trailing dot) answered SERVFAIL.
    servfail: Mutex<HashSet<String>>,
    /// Names whose queries are counted but never answered (client timeouts).
    silent: Mutex<HashSet<String>>,
    /// (name, type) -> queries received.
    queries: Mutex<HashMap<(String, RecordType), u64>>,
    /// Queries received over TCP (after a truncated UDP answer).
    tcp_queries: AtomicU64,
    /// Wait this long before each answer.
    delay: Mutex<Duration>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Lowercase, no trailing dot: the form test controls take names in.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    fn parse(text: &str) -> Result<Zone, TestDnsError> {
        let (_origin, sets) = Parser::new(text, None, Some(Name::root()))
            .parse()
            .map_err(|e| TestDnsError::Zone(e.to_string()))?;
        let mut zone = Zone::default();
        for (rr_key, set) in sets {
            let records: Vec<Record> = set.records_without_rrsigs().cloned().collect();
            if rr_key.record_type == RecordType::SOA {
                zone.soa = records.first().cloned();
            }
            zone.names.insert(rr_key.name.clone());
            zone.records
                .entry((rr_key.name, rr_key.record_type))
                .or_default()
                .extend(records);
        }
        Ok(zone)
    }
}

impl TestDnsServer {
    /// Parses `zone_text` and serves it on `bind` (a loopback address; port 0 picks
    /// a free port), over UDP and TCP on the same port.
    pub async fn start(zone_text: &str, bind: SocketAddr) -> Result<Self, TestDnsError> {
        if !bind.ip().is_loopback() {
            return Err(TestDnsError::NotLoopback(bind));
        }
        let zone = Zone::parse(zone_text)?;
        // Bind UDP, then TCP on the port UDP got; if that port is taken over TCP,
        // try again with other ports (only when the caller let us choose).
        let mut attempt = 0;
        let (udp, tcp) = loop {
            attempt += 1;
            let udp = UdpSocket::bind(bind).await?;
            match TcpListener::bind(udp.local_addr()?).await {
                Ok(tcp) => break (udp, tcp),
                Err(e) if bind.port() != 0 || attempt >= 16 => return Err(e.into()),
                Err(_) => continue,
            }
        };
        let addr = udp.local_addr()?;
        let state = Arc::new(State {
            zone: RwLock::new(zone),
            ..State::default()
        });
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), state.clone())),
            tokio::spawn(serve_tcp(tcp, state.clone())),
        ];
        Ok(TestDnsServer { addr, state, tasks })
    }

    /// The address it listens on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the zone served (e.g. to test that cached answers expire).
    pub fn set_zone(&self, zone_text: &str) -> Result<(), TestDnsError> {
        let zone = Zone::parse(zone_text)?;
        *self
            .state
            .zone
            .write()
            .unwrap_or_else(PoisonError::into_inner) = zone;
        Ok(())
    }

    /// Answers SERVFAIL for `name` (any type) until [`TestDnsServer::heal`].
    pub fn servfail(&self, name: &str) {
        lock(&self.state.servfail).insert(key(name));
    }

    /// Never answers queries for `name` (the client times out) until
    /// [`TestDnsServer::heal`].
    pub fn silence(&self, name: &str) {
        lock(&self.state.silent).insert(key(name));
    }

    /// Answers `name` from the zone again.
    pub fn heal(&self, name: &str) {
        lock(&self.state.servfail).remove(&key(name));
        lock(&self.state.silent).remove(&key(name));
    }

    /// Waits `delay` before every answer (to hold lookups in flight).
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Queries received for `name` and `rtype` so far.
    pub fn queries(&self, name: &str, rtype: RecordType) -> u64 {
        lock(&self.state.queries)
            .get(&(key(name), rtype))
            .copied()
            .unwrap_or(0)
    }

    /// Queries received over TCP so far.
    pub fn tcp_queries(&self) -> u64 {
        self.state.tcp_queries.load(Ordering::Relaxed)
    }

    /// Queries received for anything so far.
    pub fn total_queries(&self) -> u64 {
        lock(&self.state.queries).values().sum()
    }
}

impl Drop for TestDnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for TestDnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDnsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, state: Arc<State>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let request = buf[..len].to_vec();
        let (socket, state) = (socket.clone(), state.clone());
        tokio::spawn(async move {
            if let Some(reply) = respond(&state, &request, true).await {
                let _ = socket.send_to(&reply, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_tcp_connection(stream, state.clone()));
    }
}

/// RFC 1035 4.2.2: each message is preceded by its length as two bytes.
async fn serve_tcp_connection(mut stream: TcpStream, state: Arc<State>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut request = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut request).await.is_err() {
            return;
        }
        let Some(reply) = respond(&state, &request, false).await else {
            continue;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_u16(len).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// The wire reply to one wire request, or `None` to stay silent.
async fn respond(state: &State, request: &[u8], udp: bool) -> Option<Vec<u8>> {
    let Ok(request) = Message::from_vec(request) else {
        // Unparseable: FORMERR if there is at least an id to answer to.
        let id = u16::from_be_bytes([*request.first()?, *request.get(1)?]);
        return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
            .to_vec()
            .ok();
    };
    if request.message_type() != MessageType::Query {
        return None;
    }
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true);
    let query = match (request.op_code(), request.queries()) {
        (OpCode::Query, [query]) => query.clone(),
        (OpCode::Query, _) => {
            response.set_response_code(ResponseCode::FormErr);
            return response.to_vec().ok();
        }
        _ => {
            response.set_response_code(ResponseCode::NotImp);
            return response.to_vec().ok();
        }
    };
    let qname = key(&query.name().to_ascii());
    if !udp {
        state.tcp_queries.fetch_add(1, Ordering::Relaxed);
    }
    *lock(&state.queries)
        .entry((qname.clone(), query.query_type()))
        .or_default() += 1;
    if lock(&state.silent).contains(&qname) {
        return None;
    }
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response.add_query(query.clone());
    if lock(&state.servfail).contains(&qname) {
        response.set_response_code(ResponseCode::ServFail);
    } else {
        let zone = state.zone.read().unwrap_or_else(PoisonError::into_inner);
        answer_from_zone(&zone, query.name(), query.query_type(), &mut response);
    }
    let bytes = response.to_vec().ok()?;
    if udp && bytes.len() > usize::from(request.max_payload()) {
        // Too big for UDP: the truncated header tells the client to ask over TCP.
        return response.truncate().to_vec().ok();
    }
    Some(bytes)
}

/// Fills the answer (or the negative answer) for `name`/`rtype` from `zone`.
fn answer_from_zone(zone: &Zone, name: &Name, rtype: RecordType, response: &mut Message) {
    let mut current = LowerName::from(name);
    // Follow CNAMEs inside the zone; a bound stops loops.
    for _ in 0..8 {
        if let Some(records) = zone.records.get(&(current.clone(), rtype)) {
            response.add_answers(records.iter().cloned());
            return;
        }
        if rtype == RecordType::CNAME {
            break;
        }
        let Some(cname) = zone.records.get(&(current.clone(), RecordType::CNAME)) else {
            break;
        };
        response.add_answers(cname.iter().cloned());
        match cname.first().map(Record::data) {
            Some(RData::CNAME(target)) => current = LowerName::from(&target.0),
            _ => break,
        }
    }
    let code = if zone.names.contains(&current) {
        ResponseCode::NoError
    } else {
        ResponseCode::NXDomain
    };
    response.set_response_code(code);
    if let Some(soa) = &zone.soa {
        response.add_name_server(soa.clone());
    }
}
