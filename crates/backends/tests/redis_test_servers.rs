//! The test support's private servers: a server started on a port another
//! server already holds is refused, never mistaken for the one answering.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

#[test]
fn a_port_held_by_another_server_is_not_mistaken_for_ours() {
    let holder = redis_server::spawn(&[], None);
    let port = holder.port;
    let second = std::panic::catch_unwind(|| redis_server::spawn_on(port, &[]));
    assert!(
        second.is_err(),
        "a server that could not bind port {port} was handed out"
    );
    drop(holder);
}
