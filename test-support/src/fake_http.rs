//! The one hand-written HTTP stand-in of the tests: a control plane (or any JSON service)
//! answering every request with a JSON document the test may change while it runs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Serves `answer` (its value at the time of each request) as `200 OK` JSON to every request,
/// one connection at a time, on a background thread for the rest of the process; the address
/// and the number of answers written. The request head is read in full first (the request's
/// body, if any, is not read).
///
/// # Panics
///
/// When no loopback port can be had.
pub fn json_server(answer: Arc<Mutex<Value>>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let address = listener.local_addr().expect("the listener's address");
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.extend_from_slice(&buffer[..read]),
                }
            }
            let body = answer
                .lock()
                .map(|answer| answer.to_string())
                .unwrap_or_default();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (address, served)
}
