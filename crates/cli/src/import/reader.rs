//! Reading an export file line by line, bounded.

use std::path::Path;

use stowage_core::{Error, Result};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::export::Sink;
use crate::format::{Record, MAX_LINE_BYTES};

/// Feeds every record line of `reader` into `sink` (blank lines are
/// skipped). Whether the stream was complete is the sink's to say.
///
/// # Errors
/// `InvalidInput` for an over-long or malformed line (naming it); the
/// sink's errors.
pub async fn feed<R: AsyncBufRead + Unpin + Send>(reader: R, sink: &mut dyn Sink) -> Result<()> {
    let mut reader = reader;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let Some(terminated) = read_line_bounded(&mut reader, &mut line).await? else {
            return Ok(());
        };
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = Record::from_line(&line, number).map_err(|e| {
            if terminated {
                return e;
            }
            // A writer cut off mid-line (a crash, a full disk) leaves
            // half a line without its newline.
            Error::invalid_input(format!(
                "export line {number} is cut short (the file ends inside it): the file is \
                 truncated, so the import is incomplete; re-run the import with the complete \
                 file to finish it"
            ))
            .with_source(e)
        })?;
        sink.put(record)
            .await
            .map_err(|e| e.context(format!("export line {number}")))?;
    }
}

/// Reads one line (without its `\n`) of at most [`MAX_LINE_BYTES`]:
/// `Some(true)` when it ended with `\n`, `Some(false)` when the input
/// ended inside it, `None` at end of input.
async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> Result<Option<bool>> {
    loop {
        let buf = reader
            .fill_buf()
            .await
            .map_err(|e| Error::from(e).context("reading the export"))?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then_some(false));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..if done { take - 1 } else { take }]);
        reader.consume(take);
        if line.len() > MAX_LINE_BYTES {
            return Err(Error::invalid_input(format!(
                "an export line is longer than {MAX_LINE_BYTES} bytes: this is not a stowage export"
            )));
        }
        if done {
            return Ok(Some(true));
        }
    }
}

/// Feeds the file at `path` (`-` for stdin) into `sink`.
///
/// # Errors
/// As [`feed`]. It does not check that the file was complete: call
/// [`Importer::finish`](super::Importer::finish) afterwards.
pub async fn import_file(path: &Path, sink: &mut dyn Sink) -> Result<()> {
    if path.as_os_str() == "-" {
        feed(tokio::io::BufReader::new(tokio::io::stdin()), sink).await
    } else {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::from(e).context(format!("opening {}", path.display())))?;
        feed(tokio::io::BufReader::with_capacity(1 << 20, file), sink).await
    }
}
