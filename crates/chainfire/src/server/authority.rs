//! etcdctl 3.4 (grpc-go under etcd's clientv3) dials the endpoint of a per-member command
//! (`endpoint status`, `hashkv`, `snapshot save`, `defrag`) with the endpoint URL itself as the
//! HTTP/2 `:authority` — `http://10.0.0.1:2379`. etcd's Go server takes it; the Rust HTTP/2
//! stack under tonic (h2) resets every such stream as malformed, which RFC 9113 allows.
//!
//! A client connection is read through [`AuthorityFix`]. It follows the HTTP/2 frames up to the
//! first request's header block: when that block's `:authority` is a valid authority (every
//! other client), the connection is passed through untouched from then on. When it is a URL,
//! every header block on the connection is decoded (with the client's HPACK state) and sent on
//! re-encoded, statelessly, with the URL's `host:port` as the authority. Anything that is not
//! HTTP/2 (a plain HTTP/1 `GET /health`) is passed through from its first byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What every HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Octets of a frame header: length (24 bits), type, flags, stream id (32 bits).
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame every HTTP/2 peer accepts, whatever its settings say.
const SAFE_FRAME: usize = 16_384;
/// A header block (all its fragments) beyond this ends the connection; h2 itself refuses
/// decoded header lists above 16 KiB by default.
const MAX_BLOCK: usize = 256 * 1024;
/// The HPACK dynamic table size the server's SETTINGS allow (h2 keeps the default).
const TABLE_SIZE: usize = 4096;
const AUTHORITY: &[u8] = b":authority";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Expecting the client preface.
    Preface,
    /// Following frames up to the end of the first header block.
    Sniff,
    /// Rewriting every header block of this connection.
    Rewrite,
    /// Passing everything through untouched.
    Pass,
}

/// A header block being gathered over a HEADERS frame and its CONTINUATIONs.
struct Block {
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as they came, sent on unchanged when the block needs no rewrite.
    raw: Vec<u8>,
}

/// A client connection's read side, with URL authorities made valid (see the module docs).
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    /// Bytes read from the client and not yet judged.
    input: BytesMut,
    /// Judged bytes, for the HTTP/2 server to read.
    output: BytesMut,
    /// Payload bytes of a passed-through frame still to come.
    forward: usize,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
}

impl<S> AuthorityFix<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Self {
            inner,
            mode: Mode::Preface,
            input: BytesMut::new(),
            output: BytesMut::new(),
            forward: 0,
            block: None,
            decoder,
        }
    }

    /// Judges what it can of `input`; `false` when it needs more bytes.
    fn step(&mut self) -> io::Result<bool> {
        match self.mode {
            Mode::Pass => {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let all = self.input.split();
                self.output.unsplit(all);
                Ok(true)
            }
            Mode::Preface => {
                let n = self.input.len().min(PREFACE.len());
                if self.input[..n] != PREFACE[..n] {
                    self.mode = Mode::Pass; // HTTP/1 (or garbage the server will refuse)
                    return Ok(true);
                }
                if n < PREFACE.len() {
                    return Ok(false);
                }
                let preface = self.input.split_to(PREFACE.len());
                self.output.unsplit(preface);
                self.mode = Mode::Sniff;
                Ok(true)
            }
            Mode::Sniff | Mode::Rewrite => match self.frame() {
                // Before the first request, the server judges malformed input itself (and
                // answers it as HTTP/2 says: GOAWAY, RST_STREAM); the bytes go on untouched.
                Err(_) if self.mode == Mode::Sniff => {
                    self.give_up();
                    Ok(true)
                }
                judged => judged,
            },
        }
    }

    /// Sends on whatever was held back, as it came, and passes the rest through.
    fn give_up(&mut self) {
        if let Some(block) = self.block.take() {
            self.output.extend_from_slice(&block.raw);
        }
        self.mode = Mode::Pass;
    }

    fn frame(&mut self) -> io::Result<bool> {
        if self.forward > 0 {
            if self.input.is_empty() {
                return Ok(false);
            }
            let n = self.forward.min(self.input.len());
            let part = self.input.split_to(n);
            self.output.unsplit(part);
            self.forward -= n;
            return Ok(true);
        }
        if self.input.len() < FRAME_HEADER {
            return Ok(false);
        }
        let len = usize::from(self.input[0]) << 16 | usize::from(self.input[1]) << 8 | usize::from(self.input[2]);
        let (kind, flags) = (self.input[3], self.input[4]);
        let stream: [u8; 4] = [self.input[5] & 0x7f, self.input[6], self.input[7], self.input[8]];
        if kind != HEADERS && kind != CONTINUATION {
            if self.block.is_some() {
                return Err(malformed("a frame other than CONTINUATION interrupted a header block"));
            }
            let header = self.input.split_to(FRAME_HEADER);
            self.output.unsplit(header);
            self.forward = len;
            return Ok(true);
        }
        let gathered = self.block.as_ref().map_or(0, |b| b.raw.len());
        if gathered + FRAME_HEADER + len > MAX_BLOCK {
            return Err(malformed("header block too large"));
        }
        if self.input.len() < FRAME_HEADER + len {
            return Ok(false);
        }
        let payload = &self.input[FRAME_HEADER..FRAME_HEADER + len];
        let (fragment, priority) = if kind == HEADERS {
            if self.block.is_some() {
                return Err(malformed("HEADERS inside a header block"));
            }
            let (fragment, priority) = headers_payload(flags, payload)?;
            (fragment.to_vec(), priority)
        } else {
            if self.block.as_ref().is_none_or(|b| b.stream != stream) {
                return Err(malformed("CONTINUATION outside a header block"));
            }
            (payload.to_vec(), None)
        };
        let frame = self.input.split_to(FRAME_HEADER + len);
        match self.block.as_mut() {
            Some(block) => {
                block.fragment.extend_from_slice(&fragment);
                block.raw.extend_from_slice(&frame);
            }
            None => {
                let end_stream = flags & END_STREAM != 0;
                self.block = Some(Block { stream, end_stream, priority, fragment, raw: frame.to_vec() });
            }
        }
        if flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            self.finish(block)?;
        }
        Ok(true)
    }

    /// A complete header block: sent on as it came, or rewritten.
    fn finish(&mut self, block: Block) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let decoded = self
            .decoder
            .decode_with_cb(&block.fragment, |name, value| fields.push((name.into_owned(), value.into_owned())));
        if let Err(e) = decoded {
            if self.mode == Mode::Sniff {
                self.block = Some(block); // given up on: the server gets it as it came
            }
            return Err(malformed(&format!("header block does not decode: {e:?}")));
        }
        if self.mode == Mode::Sniff {
            let url_authority =
                fields.iter().any(|(n, v)| n == AUTHORITY && http::uri::Authority::try_from(&v[..]).is_err());
            if !url_authority {
                // The server decodes the original block with the same HPACK state as ours.
                self.output.extend_from_slice(&block.raw);
                self.mode = Mode::Pass;
                return Ok(());
            }
            tracing::debug!("client sends URLs as :authority; rewriting its header blocks");
            self.mode = Mode::Rewrite;
        }
        fields.retain_mut(|(name, value)| {
            if name != AUTHORITY || http::uri::Authority::try_from(&value[..]).is_ok() {
                return true;
            }
            match authority_of_url(value) {
                Some(fixed) => {
                    *value = fixed.into_bytes();
                    true
                }
                None => false, // no usable authority: the request goes on without one
            }
        });
        let encoded = encode_without_indexing(&fields);
        write_block(&mut self.output, &block, &encoded);
        Ok(())
    }
}

/// The fragment of a HEADERS payload, without padding, and its priority fields.
fn headers_payload(flags: u8, payload: &[u8]) -> io::Result<(&[u8], Option<[u8; 5]>)> {
    let mut rest = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        let (&p, r) = rest.split_first().ok_or_else(|| malformed("padded HEADERS without a pad length"))?;
        pad = usize::from(p);
        rest = r;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (p, r) = rest.split_first_chunk::<5>().ok_or_else(|| malformed("HEADERS too short for its priority"))?;
        priority = Some(*p);
        rest = r;
    }
    let end = rest.len().checked_sub(pad).ok_or_else(|| malformed("HEADERS padding longer than the frame"))?;
    Ok((&rest[..end], priority))
}

/// `host:port` of an `http(s)://host:port[/…]` URL.
fn authority_of_url(value: &[u8]) -> Option<String> {
    let url = url::Url::parse(std::str::from_utf8(value).ok()?).ok()?;
    let host = url.host_str()?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    http::uri::Authority::try_from(authority.as_str()).is_ok().then_some(authority)
}

/// An HPACK block of literal fields that touch no table (RFC 7541 §6.2.2), so the server's
/// decoding state stays empty whatever the client's was.
fn encode_without_indexing(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        for string in [name, value] {
            // Writing into a Vec cannot fail.
            let _ = loona_hpack::encoder::encode_integer_into(string.len(), 7, 0, &mut out);
            out.extend_from_slice(string);
        }
    }
    out
}

/// A HEADERS frame (and CONTINUATIONs as needed) carrying `encoded` for `block`'s stream.
fn write_block(out: &mut BytesMut, block: &Block, encoded: &[u8]) {
    let first_room = SAFE_FRAME - block.priority.map_or(0, |p| p.len());
    let (first, mut rest) = encoded.split_at(encoded.len().min(first_room));
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    let priority = block.priority.as_ref().map_or(&[][..], |p| &p[..]);
    frame_header(out, priority.len() + first.len(), HEADERS, flags, block.stream);
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, more) = rest.split_at(rest.len().min(SAFE_FRAME));
        frame_header(out, chunk.len(), CONTINUATION, if more.is_empty() { END_HEADERS } else { 0 }, block.stream);
        out.extend_from_slice(chunk);
        rest = more;
    }
}

fn frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: [u8; 4]) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.put_u8(kind);
    out.put_u8(flags);
    out.extend_from_slice(&stream);
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2: {what}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Pass && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.step()? {
                continue;
            }
            this.input.reserve(SAFE_FRAME);
            if ready!(tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.input))? == 0 {
                return Poll::Ready(Ok(())); // the client is gone; a partial frame means nothing
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn request(authority: &str, path: &str) -> Fields {
        [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", authority), ("te", "trailers")]
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame_header(&mut out, payload.len(), kind, flags, stream.to_be_bytes());
        out.extend_from_slice(payload);
        out.to_vec()
    }

    /// What a client sends: the preface, SETTINGS, a request whose block goes into the
    /// client's HPACK table, its DATA, and a second request (split over a CONTINUATION, with
    /// padding and priority) that the client encodes mostly as references to that table.
    fn client_bytes(authority: &str) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        let first = request(authority, "/etcdserverpb.Maintenance/Status");
        let block = encoder.encode(first.iter().map(|(n, v)| (&n[..], &v[..])));
        out.extend(frame(HEADERS, END_HEADERS, 1, &block));
        out.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        let second = request(authority, "/etcdserverpb.Maintenance/HashKV");
        let block = encoder.encode(second.iter().map(|(n, v)| (&n[..], &v[..])));
        let (a, b) = block.split_at(3);
        let mut payload = vec![2u8]; // pad length
        payload.extend([0, 0, 0, 1, 15]); // priority: depends on stream 1, weight 16
        payload.extend(a);
        payload.extend([0, 0]);
        out.extend(frame(HEADERS, PADDED | PRIORITY, 3, &payload));
        out.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        out
    }

    /// A reader that hands out at most `chunk` bytes per read.
    struct Trickle(Vec<u8>, usize);

    impl AsyncRead for Trickle {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = this.0.len().min(this.1).min(buf.remaining());
            buf.put_slice(&this.0[..n]);
            this.0.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    fn through_fix(input: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut fix = AuthorityFix::new(Trickle(input.to_vec(), chunk));
        let mut out = Vec::new();
        futures::executor::block_on(fix.read_to_end(&mut out))?;
        Ok(out)
    }

    /// The header blocks in `bytes` (after the preface), decoded as a server would.
    fn server_reads(bytes: &[u8]) -> Vec<Fields> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut rest = &bytes[PREFACE.len()..];
        let (mut blocks, mut block) = (Vec::new(), Vec::new());
        while rest.len() >= FRAME_HEADER {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
            if kind == HEADERS {
                block.extend_from_slice(headers_payload(flags, payload).unwrap().0);
            } else if kind == CONTINUATION {
                block.extend_from_slice(payload);
            }
            if (kind == HEADERS || kind == CONTINUATION) && flags & END_HEADERS != 0 {
                blocks.push(decoder.decode(&std::mem::take(&mut block)).unwrap());
            }
            rest = &rest[FRAME_HEADER + len..];
        }
        assert!(rest.is_empty(), "a partial frame was left");
        blocks
    }

    #[test]
    fn url_authorities_become_host_and_port_on_every_request_of_the_connection() {
        let out = through_fix(&client_bytes("http://127.0.0.1:2379"), usize::MAX).unwrap();
        let blocks = server_reads(&out);
        assert_eq!(
            blocks,
            [
                request("127.0.0.1:2379", "/etcdserverpb.Maintenance/Status"),
                request("127.0.0.1:2379", "/etcdserverpb.Maintenance/HashKV")
            ]
        );
        // The DATA frame went through as it was.
        let data = frame(0x0, END_STREAM, 1, b"\0\0\0\0\0");
        assert!(out.windows(data.len()).any(|w| w == data));
        let https = through_fix(&client_bytes("https://[::1]:2379/"), 7).unwrap();
        assert_eq!(server_reads(&https)[1][3].1, b"[::1]:2379");
    }

    #[test]
    fn valid_authorities_and_http1_pass_through_untouched() {
        let h2 = client_bytes("127.0.0.1:2379");
        assert_eq!(through_fix(&h2, usize::MAX).unwrap(), h2);
        let h1 = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n".to_vec();
        assert_eq!(through_fix(&h1, 3).unwrap(), h1);
        assert_eq!(through_fix(b"PRI", 1).unwrap(), b"", "a client gone mid-preface");
    }

    #[test]
    fn malformed_input_before_the_first_request_is_left_to_the_server() {
        let mut orphan = PREFACE.to_vec();
        orphan.extend(frame(CONTINUATION, END_HEADERS, 1, b"\x82"));
        let mut garbage = PREFACE.to_vec();
        garbage.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
        garbage.extend(frame(0x0, END_STREAM, 1, b"x"));
        let mut huge = PREFACE.to_vec();
        huge.extend([0x7f, 0, 0, HEADERS, 0, 0, 0, 0, 1]); // an 8 MiB header fragment announced
        huge.extend([0; 100]);
        let mut split = PREFACE.to_vec();
        split.extend(frame(HEADERS, 0, 1, b"\x82"));
        split.extend(frame(0x0, 0, 1, b"x")); // DATA inside a header block
        for input in [orphan, garbage, huge, split] {
            assert_eq!(through_fix(&input, 5).unwrap(), input);
        }
    }

    #[test]
    fn once_rewriting_broken_framing_ends_the_connection() {
        let mut input = client_bytes("http://127.0.0.1:2379");
        input.extend(frame(CONTINUATION, END_HEADERS, 5, b"\x82"));
        assert_eq!(through_fix(&input, 64).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut input = client_bytes("http://127.0.0.1:2379");
        input.extend(frame(HEADERS, END_HEADERS, 5, &[0xff, 0xff, 0xff, 0xff, 0xff]));
        assert_eq!(through_fix(&input, 64).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    proptest! {
        #[test]
        fn how_the_bytes_arrive_changes_nothing(chunk in 1usize..200, url in proptest::bool::ANY) {
            let input = client_bytes(if url { "http://10.0.0.1:2379" } else { "10.0.0.1:2379" });
            prop_assert_eq!(through_fix(&input, chunk).unwrap(), through_fix(&input, usize::MAX).unwrap());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), chunk in 1usize..64) {
            let mut input = PREFACE.to_vec();
            input.extend(bytes);
            let _ = through_fix(&input, chunk);
        }
    }
}
