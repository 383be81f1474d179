//! Follows the request framing of one connection's inbound bytes, to find the requests
//! that carry both `Content-Length` and `Transfer-Encoding` (issue #9, defect 11).
//!
//! hyper frames such a request by `Transfer-Encoding` alone, as RFC 9112 §6.3 allows, and
//! closes the connection after it, but it removes `Content-Length` from the headers it
//! hands over, so the service cannot tell such a request from a plain chunked one. A proxy
//! in front that frames by `Content-Length` instead would see another request boundary
//! than the server (request smuggling), so the server refuses the request outright.
//! This check reads the same bytes hyper reads, in the same order, and applies the same
//! framing rules (a head, then a body of `Content-Length` bytes or of chunks, or none), so
//! it counts request heads exactly as hyper dispatches them: the service asks it by the
//! index of its request. Where it cannot follow the bytes (a head it cannot parse, an
//! upgrade, a chunk line it does not understand) it stops for the rest of the connection;
//! hyper refuses the same bytes and closes, so nothing is missed on a connection that
//! goes on.

use crate::limits::{CHUNK_LINE_BYTES_MAX, REQUEST_HEADERS_MAX, REQUEST_HEAD_BYTES_MAX};

/// Where in the byte stream the check is.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// The start of a request head (or the middle of one, held in `head`).
    Head,
    /// `remaining` bytes of a `Content-Length` body.
    Body { remaining: u64 },
    /// A chunk-size line.
    ChunkSize,
    /// `remaining` bytes of chunk data.
    ChunkData { remaining: u64 },
    /// The line break after a chunk's data.
    ChunkEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
    /// The check lost track (or found what it looks for); it reads no further.
    Stopped,
}

/// How a head frames its body.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Both `Content-Length` and `Transfer-Encoding`.
    Ambiguous,
    /// Something the check does not follow; hyper refuses it or switches protocols.
    Unknown,
}

/// The framing check of one connection.
#[derive(Debug)]
pub(crate) struct FramingCheck {
    expect: Expect,
    /// The part of a head or line read so far.
    pending: Vec<u8>,
    /// Heads read so far; the next head's index.
    heads: u64,
}

impl FramingCheck {
    pub(crate) fn new() -> Self {
        FramingCheck {
            expect: Expect::Head,
            pending: Vec::new(),
            heads: 0,
        }
    }

    /// Follows `bytes`, the next bytes read from the client. Returns the index (counted
    /// from 0 in the order hyper dispatches requests) of a head that carries both
    /// `Content-Length` and `Transfer-Encoding`, if these bytes complete one.
    pub(crate) fn observe(&mut self, mut bytes: &[u8]) -> Option<u64> {
        while !bytes.is_empty() {
            let consumed = match self.expect {
                Expect::Stopped => return None,
                Expect::Head => match self.head(bytes) {
                    HeadStep::Partial => bytes.len(),
                    HeadStep::Complete {
                        consumed,
                        ambiguous,
                    } => {
                        if ambiguous {
                            return Some(self.heads - 1);
                        }
                        consumed
                    }
                },
                Expect::Body { remaining } | Expect::ChunkData { remaining } => {
                    let taken = remaining.min(bytes.len() as u64);
                    let left = remaining - taken;
                    self.expect = match (&self.expect, left) {
                        (Expect::Body { .. }, 0) => Expect::Head,
                        (Expect::Body { .. }, _) => Expect::Body { remaining: left },
                        (_, 0) => Expect::ChunkEnd,
                        (_, _) => Expect::ChunkData { remaining: left },
                    };
                    // `taken` is at most `bytes.len()`, so it fits in usize.
                    taken as usize
                }
                Expect::ChunkSize | Expect::ChunkEnd | Expect::Trailers => self.line(bytes),
            };
            bytes = &bytes[consumed..];
        }
        None
    }

    /// Reads head bytes; on a complete head decides what follows it.
    fn head(&mut self, bytes: &[u8]) -> HeadStep {
        let start = self.pending.len();
        self.pending.extend_from_slice(bytes);
        // A head ends with a blank line: not worth parsing before a line break arrives.
        if !bytes.contains(&b'\n') {
            if self.pending.len() > REQUEST_HEAD_BYTES_MAX {
                self.stop();
            }
            return HeadStep::Partial;
        }
        let mut headers = [httparse::EMPTY_HEADER; REQUEST_HEADERS_MAX];
        let mut request = httparse::Request::new(&mut headers);
        let length = match request.parse(&self.pending) {
            Ok(httparse::Status::Complete(length)) if length <= REQUEST_HEAD_BYTES_MAX => length,
            Ok(httparse::Status::Partial) if self.pending.len() <= REQUEST_HEAD_BYTES_MAX => {
                return HeadStep::Partial
            }
            // Too long or not HTTP: hyper answers 431 or 400 and closes the connection.
            Ok(_) | Err(_) => {
                self.stop();
                return HeadStep::Partial;
            }
        };
        let framing = framing(&request);
        self.heads += 1;
        self.pending.clear();
        self.expect = match framing {
            Framing::None | Framing::Length(0) => Expect::Head,
            Framing::Length(remaining) => Expect::Body { remaining },
            Framing::Chunked => Expect::ChunkSize,
            Framing::Ambiguous | Framing::Unknown => Expect::Stopped,
        };
        // The head ends inside `bytes`: what came before it was held in `pending`.
        HeadStep::Complete {
            consumed: length - start,
            ambiguous: framing == Framing::Ambiguous,
        }
    }

    /// Reads a line of a chunked body; returns how many bytes of `bytes` it took.
    fn line(&mut self, bytes: &[u8]) -> usize {
        let Some(end) = bytes.iter().position(|byte| *byte == b'\n') else {
            self.pending.extend_from_slice(bytes);
            if self.pending.len() > CHUNK_LINE_BYTES_MAX {
                self.stop();
            }
            return bytes.len();
        };
        self.pending.extend_from_slice(&bytes[..end]);
        let line = self
            .pending
            .strip_suffix(b"\r")
            .unwrap_or(&self.pending)
            .to_vec();
        self.pending.clear();
        self.expect = match self.expect {
            Expect::ChunkSize => match chunk_size(&line) {
                Some(0) => Expect::Trailers,
                Some(remaining) => Expect::ChunkData { remaining },
                None => Expect::Stopped,
            },
            Expect::ChunkEnd if line.is_empty() => Expect::ChunkSize,
            Expect::Trailers if line.is_empty() => Expect::Head,
            Expect::Trailers => Expect::Trailers,
            _ => Expect::Stopped,
        };
        if line.len() > CHUNK_LINE_BYTES_MAX {
            self.stop();
        }
        end + 1
    }

    fn stop(&mut self) {
        self.expect = Expect::Stopped;
        self.pending = Vec::new();
    }
}

enum HeadStep {
    Partial,
    Complete { consumed: usize, ambiguous: bool },
}

/// How hyper frames the body of a parsed head (hyper's `role.rs`): `Transfer-Encoding`
/// whose last coding is `chunked`, else `Content-Length`, else no body.
fn framing(request: &httparse::Request<'_, '_>) -> Framing {
    if request.method == Some("CONNECT") {
        return Framing::Unknown;
    }
    let mut length = None;
    let mut chunked = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("upgrade") {
            return Framing::Unknown;
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = header.value.rsplit(|byte| *byte == b',').next();
            chunked = Some(
                last.is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked")),
            );
        } else if header.name.eq_ignore_ascii_case("content-length") {
            match (decimal(header.value), length) {
                (Some(value), None) => length = Some(value),
                (Some(value), Some(earlier)) if value == earlier => {}
                _ => return Framing::Unknown,
            }
        }
    }
    match (length, chunked) {
        (Some(_), Some(_)) => Framing::Ambiguous,
        (_, Some(true)) => Framing::Chunked,
        (_, Some(false)) => Framing::Unknown,
        (Some(length), None) => Framing::Length(length),
        (None, None) => Framing::None,
    }
}

/// A `Content-Length` value: decimal digits only, as hyper reads it.
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |total, byte| match byte {
        b'0'..=b'9' => total.checked_mul(10)?.checked_add(u64::from(byte - b'0')),
        _ => None,
    })
}

/// The size of a chunk-size line: hex digits, then optional spaces or tabs, then
/// optional extensions after `;`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line
        .iter()
        .position(|byte| !byte.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 {
        return None;
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return None;
    }
    line[..digits].iter().try_fold(0u64, |total, byte| {
        let digit = char::from(*byte).to_digit(16)?;
        total.checked_mul(16)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::FramingCheck;

    /// Feeds `input` in pieces of `piece` bytes; returns the ambiguous head found.
    fn check(input: &[u8], piece: usize) -> Option<u64> {
        let mut framing = FramingCheck::new();
        input.chunks(piece).find_map(|bytes| framing.observe(bytes))
    }

    /// Every piece size finds the same answer.
    fn check_all_pieces(input: &[u8]) -> Option<u64> {
        let whole = check(input, input.len());
        for piece in 1..input.len() {
            assert_eq!(check(input, piece), whole, "pieces of {piece} bytes");
        }
        whole
    }

    const PLAIN: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    const CHUNKED: &[u8] = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n\r\n\r\n\r\n0\r\nX-Trailer: Content-Length: 3\r\n\r\n";
    const AMBIGUOUS: &[u8] =
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n";

    /// A request whose `Content-Length` body looks like the rest of an ambiguous head.
    fn with_length() -> Vec<u8> {
        let body = b"Content-Length: 5\r\nTransfer-Encoding: x\r\n\r\n";
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        [head.as_bytes(), &body[..]].concat()
    }

    #[test]
    fn a_head_with_both_lengths_is_found_at_its_index() {
        assert_eq!(check_all_pieces(AMBIGUOUS), Some(0));
        let pipelined = [PLAIN, &with_length(), CHUNKED, &b"\r\n"[..], AMBIGUOUS].concat();
        assert_eq!(check_all_pieces(&pipelined), Some(3));
    }

    #[test]
    fn bodies_that_look_like_headers_are_skipped() {
        let pipelined = [PLAIN, &with_length(), CHUNKED, PLAIN].concat();
        assert_eq!(check_all_pieces(&pipelined), None);
    }

    #[test]
    fn content_length_before_transfer_encoding_is_ambiguous_too() {
        let request =
            b"POST / HTTP/1.1\r\ncontent-length: 5\r\nTRANSFER-ENCODING: gzip, chunked\r\n\r\n";
        assert_eq!(check_all_pieces(request), Some(0));
    }

    #[test]
    fn what_the_check_cannot_follow_stops_it() {
        let upgrade = b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n";
        assert_eq!(check_all_pieces(&[&upgrade[..], AMBIGUOUS].concat()), None);
        let bad_chunk = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(
            check_all_pieces(&[&bad_chunk[..], AMBIGUOUS].concat()),
            None
        );
        let garbage = b"\x00\x01 not http\r\n\r\n";
        assert_eq!(check_all_pieces(&[&garbage[..], AMBIGUOUS].concat()), None);
    }

    #[test]
    fn a_head_over_the_limit_stops_the_check() {
        let mut huge = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        huge.resize(crate::limits::REQUEST_HEAD_BYTES_MAX + 10, b'a');
        huge.extend_from_slice(b"\r\n\r\n");
        assert_eq!(check(&[&huge[..], AMBIGUOUS].concat(), 4096), None);
    }
}
