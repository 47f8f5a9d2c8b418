//! The agent's server-sent events client: a parser of `text/event-stream`
//! bytes into frames, bounded in size (nothing the server sends is trusted
//! for size), and a reader of frames from a response's byte stream with an
//! idle limit (the server sends a keep-alive comment every 15 s, so a silent
//! connection is a dead one).

use futures::{Stream, StreamExt};
use std::time::Duration;

/// The largest frame (all its lines together) or line the agent accepts.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// How long the stream may stay silent (not even a keep-alive comment)
/// before the agent counts the connection as dead.
pub const IDLE_LIMIT: Duration = Duration::from_secs(45);

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its `id:` field, if it had one.
    pub id: Option<String>,
    /// Its `event:` field (`message` when absent).
    pub event: String,
    /// Its `data:` lines, joined with `\n`.
    pub data: String,
}

/// Why a stream of frames ended in error.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A frame (or a single line) grew past the limit.
    #[error("the server sent a frame larger than {limit} bytes")]
    FrameTooLarge {
        /// The limit that was passed.
        limit: usize,
    },
    /// Nothing arrived within the idle limit.
    #[error("nothing arrived for {} s (not even a keep-alive)", .0.as_secs())]
    Idle(Duration),
    /// Reading the body failed.
    #[error("reading the stream failed: {0}")]
    Read(String),
}

/// An incremental `text/event-stream` parser (the WHATWG rules: lines end in
/// `\n`, `\r\n` or `\r`; `:` starts a comment; a blank line dispatches; a
/// field without `:` has an empty value; one leading space of a value is
/// dropped; `retry` and unknown fields are ignored).
#[derive(Debug)]
pub struct SseParser {
    /// Bytes not yet split into lines.
    pending: Vec<u8>,
    /// Whether the last byte consumed was a `\r` (so a `\n` right after it
    /// ends nothing).
    after_cr: bool,
    /// The frame being built.
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    /// Bytes of the lines of the frame being built.
    frame_bytes: usize,
    limit: usize,
}

impl SseParser {
    /// A parser refusing frames (and lines) larger than `limit` bytes.
    pub fn new(limit: usize) -> SseParser {
        SseParser {
            pending: Vec::new(),
            after_cr: false,
            id: None,
            event: None,
            data: None,
            frame_bytes: 0,
            limit,
        }
    }

    /// Feeds `chunk`, returning the frames it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Frame>, StreamError> {
        let mut frames = Vec::new();
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.check_size(end)?;
            self.pending.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.pending);
            if rest[end] == b'\r' {
                match rest.get(end + 1) {
                    Some(b'\n') => rest = &rest[end + 2..],
                    Some(_) => rest = &rest[end + 1..],
                    None => {
                        self.after_cr = true;
                        rest = &[];
                    }
                }
            } else {
                rest = &rest[end + 1..];
            }
            if let Some(frame) = self.line(&line) {
                frames.push(frame);
            }
        }
        self.check_size(rest.len())?;
        self.pending.extend_from_slice(rest);
        Ok(frames)
    }

    /// Refuses `more` bytes when the frame would then pass the limit.
    fn check_size(&self, more: usize) -> Result<(), StreamError> {
        if self.frame_bytes + self.pending.len() + more > self.limit {
            return Err(StreamError::FrameTooLarge { limit: self.limit });
        }
        Ok(())
    }

    /// Takes one complete line; a blank one dispatches the frame, if any.
    fn line(&mut self, line: &[u8]) -> Option<Frame> {
        if line.is_empty() {
            self.frame_bytes = 0;
            let event = self.event.take();
            let id = self.id.take();
            // A frame without `data:` lines (only comments, or only an id
            // or event name) dispatches nothing.
            return self.data.take().map(|data| Frame {
                id,
                event: event.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(b":") {
            // Comments are dropped as they come: they take no memory, so
            // they count towards no frame.
            return None;
        }
        self.frame_bytes += line.len() + 1;
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

/// Frames read from a response body: the byte stream, the parser, and the
/// frames parsed but not handed out yet.
pub struct FrameReader<S> {
    body: S,
    parser: SseParser,
    ready: std::collections::VecDeque<Frame>,
    idle: Duration,
}

impl<S, B, E> FrameReader<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    /// Reads `body` with the given frame size and idle limits.
    pub fn new(body: S, limit: usize, idle: Duration) -> FrameReader<S> {
        FrameReader {
            body,
            parser: SseParser::new(limit),
            ready: std::collections::VecDeque::new(),
            idle,
        }
    }

    /// The next frame; `Ok(None)` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<Frame>, StreamError> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Ok(Some(frame));
            }
            let chunk = match tokio::time::timeout(self.idle, self.body.next()).await {
                Err(_) => return Err(StreamError::Idle(self.idle)),
                Ok(None) => return Ok(None),
                Ok(Some(Err(error))) => return Err(StreamError::Read(error.to_string())),
                Ok(Some(Ok(chunk))) => chunk,
            };
            self.ready.extend(self.parser.push(chunk.as_ref())?);
        }
    }
}
