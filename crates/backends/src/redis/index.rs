//! Paging through the lexicographic sorted-set indexes (blobs, sessions,
//! release names). Index entries are written as a second step after the
//! record (see `docs/redis.md`), so a page keeps only members whose record
//! still exists.

use std::future::Future;

use stowage_core::Result;

use super::conn::{bytes, items, Conn, Op};

/// Members fetched per `ZRANGEBYLEX` call.
const LEX_BATCH: usize = 256;

/// Members of the index `idx` strictly after `after`, ascending by bytes,
/// mapped through `keep` (one call per batch, which answers `None` for a
/// member whose record is gone), until `limit` items are kept or the index
/// ends.
///
/// # Errors
/// Connection errors of the scan (`what` names the operation) and of `keep`.
pub(super) async fn scan_lex<T, F, Fut>(
    conn: &Conn,
    idx: &[u8],
    after: Option<Vec<u8>>,
    limit: usize,
    what: &str,
    keep: F,
) -> Result<Vec<T>>
where
    F: Fn(Vec<Vec<u8>>) -> Fut,
    Fut: Future<Output = Result<Vec<Option<T>>>>,
{
    let mut out = Vec::new();
    let mut cursor = after;
    while out.len() < limit {
        let min = match &cursor {
            None => b"-".to_vec(),
            Some(c) => [&b"("[..], c].concat(),
        };
        let mut cmd = redis::cmd("ZRANGEBYLEX");
        cmd.arg(idx)
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(LEX_BATCH);
        let members: Vec<Vec<u8>> = items(conn.query(&cmd, Op::Read, what).await?)
            .iter()
            .filter_map(|v| bytes(v).map(<[u8]>::to_vec))
            .collect();
        let Some(last) = members.last().cloned() else {
            break;
        };
        let full_batch = members.len() == LEX_BATCH;
        for item in keep(members).await?.into_iter().flatten() {
            if out.len() < limit {
                out.push(item);
            }
        }
        if !full_batch {
            break;
        }
        cursor = Some(last);
    }
    Ok(out)
}
