//! A DNS server of the test's own on 127.0.0.1: a small UDP responder over
//! hickory-proto answering from a zone the test gives, which petrel's
//! resolver is pointed at with `Name_Servers` as an operator would. Each
//! test starts its own, so that no cached answer of one test hides the
//! behaviour another checks.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// What the zone answers to a question.
pub enum Reply {
    Records(Vec<RData>),
    /// The name exists, without records of the type asked.
    NoData,
    NxDomain,
    ServFail,
}

/// The zone: the answer to (owner, lower-case without the final dot; type).
pub type Zone = dyn Fn(&str, RecordType) -> Reply + Send + Sync;

pub fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

pub fn mx(preference: u16, exchange: &str) -> RData {
    RData::MX(MX::new(preference, name(exchange)))
}

pub fn a(text: &str) -> RData {
    RData::A(A(text.parse().unwrap()))
}

pub fn aaaa(text: &str) -> RData {
    RData::AAAA(AAAA(text.parse().unwrap()))
}

/// The reply for records found under `owner`, or, with none, NODATA when
/// `owner` is one of `existing` names and NXDOMAIN otherwise.
pub fn answer(records: Vec<RData>, owner: &str, existing: &[&str]) -> Reply {
    match (records.is_empty(), existing.contains(&owner)) {
        (false, _) => Reply::Records(records),
        (true, true) => Reply::NoData,
        (true, false) => Reply::NxDomain,
    }
}

/// How long a server answers at most, whatever happens to its test: a
/// bound, not an expectation.
const LIFETIME: Duration = Duration::from_secs(600);

/// A DNS server on 127.0.0.1 (a port the kernel chose), answering from its
/// zone and noting every question. It stops when dropped, and on its own
/// after [`LIFETIME`].
pub struct DnsServer {
    pub addr: SocketAddr,
    questions: Arc<Mutex<Vec<(String, RecordType)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    pub fn start(zone: impl Fn(&str, RecordType) -> Reply + Send + Sync + 'static) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let questions = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let questions = Arc::clone(&questions);
            let stop = Arc::clone(&stop);
            move || serve(&socket, &zone, &questions, &stop)
        });
        DnsServer {
            addr,
            questions,
            stop,
            thread: Some(thread),
        }
    }

    /// Every question so far: (owner, type).
    pub fn questions(&self) -> Vec<(String, RecordType)> {
        self.questions.lock().unwrap().clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    socket: &UdpSocket,
    zone: &Zone,
    questions: &Mutex<Vec<(String, RecordType)>>,
    stop: &AtomicBool,
) {
    let deadline = Instant::now() + LIFETIME;
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(request) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let Some(query) = request.queries.first().cloned() else {
            continue;
        };
        let owner = query
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        questions
            .lock()
            .unwrap()
            .push((owner.clone(), query.query_type()));
        let mut response = Message::new(
            request.metadata.id,
            MessageType::Response,
            request.metadata.op_code,
        );
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.authoritative = true;
        response.add_query(query.clone());
        match zone(&owner, query.query_type()) {
            Reply::Records(records) => {
                for data in records {
                    response.add_answer(Record::from_rdata(query.name().clone(), 60, data));
                }
            }
            Reply::NoData => {}
            Reply::NxDomain => response.metadata.response_code = ResponseCode::NXDomain,
            Reply::ServFail => response.metadata.response_code = ResponseCode::ServFail,
        }
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, peer);
        }
    }
}
