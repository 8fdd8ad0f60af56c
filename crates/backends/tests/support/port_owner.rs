//! Which process listens on a loopback port, read from `/proc`.
//!
//! A port found free may be bound by another test's server before ours
//! binds it; ours then exits, and a readiness probe on that port would be
//! answered by the other server (a cluster node answering a standalone
//! test's writes with "ClusterDown"). A server is trusted only once its
//! own process holds the listening socket.

use std::collections::HashSet;
use std::fs;

/// What `/proc` says of process `pid` and `port`.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    /// `pid` holds a socket listening on `port`.
    Ours,
    /// `pid` runs but does not (yet) listen on `port`.
    NotYet,
    /// `pid` has exited (or is a zombie): it will never listen.
    Gone,
}

/// Whether process `pid` listens on TCP `port`.
pub fn owner(pid: u32, port: u16) -> Owner {
    if !alive(pid) {
        return Owner::Gone;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Owner::Gone;
    };
    let sockets: HashSet<String> = fds
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let listens = ["tcp", "tcp6"].iter().any(|table| {
        fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| listening_socket(line, port).is_some_and(|i| sockets.contains(i)))
    });
    if listens {
        Owner::Ours
    } else {
        Owner::NotYet
    }
}

/// The inode of a `/proc/net/tcp` row that listens on `port`.
fn listening_socket(row: &str, port: u16) -> Option<&str> {
    let fields: Vec<&str> = row.split_whitespace().collect();
    let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
    let row_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    // State 0A is TCP_LISTEN.
    (row_port == port && *state == "0A").then_some(*inode)
}

/// The process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
}
