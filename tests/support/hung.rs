//! A "SQL Server" that accepts every TCP connection and never says a word:
//! what a hung server looks like to a client.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Starts it on a free loopback port; it lives as long as the listener.
pub fn hung_server() -> (TcpListener, SocketAddr) {
    let (listener, addr, _) = counted_hung_server();
    (listener, addr)
}

/// [`hung_server`], with the number of connections it has accepted so far
/// (a client waiting on it, for a test that must stop one while it waits).
pub fn counted_hung_server() -> (TcpListener, SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = listener.try_clone().expect("clone");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counting = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in accept.incoming().flatten() {
            held.push(stream); // kept open, never answered
            counting.fetch_add(1, Ordering::SeqCst);
            if held.len() > 64 {
                break;
            }
        }
    });
    (listener, addr, accepted)
}
