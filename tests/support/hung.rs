//! A "SQL Server" that accepts every TCP connection and never says a word:
//! what a hung server looks like to a client.

use std::net::{SocketAddr, TcpListener};

/// Starts it on a free loopback port; it lives as long as the listener.
pub fn hung_server() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = listener.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in accept.incoming().flatten() {
            held.push(stream); // kept open, never answered
            if held.len() > 64 {
                break;
            }
        }
    });
    (listener, addr)
}
