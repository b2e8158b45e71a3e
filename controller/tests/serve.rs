//! The API's listener against clients that hold connections: a slowloris, an idle keep-alive
//! connection and a crowd of idle connections are closed, and the API answers again after.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use outflow_controller::{app, serve, AppState, ConnectionLimits, Store};

fn start(limits: ConnectionLimits) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let state = AppState::new(Store::open(Path::new(":memory:"), u64::MAX).unwrap());
            serve(listener, app(state), limits, std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

/// How long until the server closes `s` (reads EOF or a reset), at most `limit`.
fn closed_after(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 512];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

fn healthz(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn a_slowloris_and_an_idle_connection_are_closed_at_the_header_timeout() {
    let addr = start(ConnectionLimits {
        header_timeout: Duration::from_millis(600),
        ..ConnectionLimits::default()
    });
    let mut idle = TcpStream::connect(addr).unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    // One header byte every 100 ms: never a whole request.
    let dripping = std::thread::spawn(move || {
        for _ in 0..30 {
            if slow.write_all(b"x").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let idle_closed = closed_after(&mut idle, Duration::from_secs(3));
    assert!(
        idle_closed.is_some_and(|t| t >= Duration::from_millis(400)),
        "idle connection: {idle_closed:?}"
    );
    assert!(dripping.join().unwrap(), "the slowloris was never cut off");
    // A keep-alive connection between requests is idle too.
    let mut keep = TcpStream::connect(addr).unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    assert!(closed_after(&mut keep, Duration::from_secs(3)).is_some());
    assert!(healthz(addr).starts_with("HTTP/1.1 200"));
}

#[test]
fn connections_past_the_limit_are_closed_and_the_api_answers_once_they_go() {
    let addr = start(ConnectionLimits {
        header_timeout: Duration::from_secs(2),
        max_connections: 4,
        ..ConnectionLimits::default()
    });
    let crowd: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fifth = TcpStream::connect(addr).unwrap();
    let closed = closed_after(&mut fifth, Duration::from_secs(1));
    assert!(
        closed.is_some_and(|t| t < Duration::from_millis(900)),
        "over the limit: {closed:?}"
    );
    // The crowd times out; then there is room again.
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(
        healthz(addr).starts_with("HTTP/1.1 200"),
        "no room after the crowd left"
    );
    drop(crowd);
}
