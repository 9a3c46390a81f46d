//! WebSocket frames (RFC 6455, section 5): the client's frames read into
//! whole messages, and the server's lines written as frames.
//!
//! Headers are parsed and written by tungstenite's codec
//! ([`FrameHeader`]); this module keeps the state between reads: a frame
//! cut by a read, and a message split into fragments. Both buffers exist
//! only while something is half-read, so an idle WebSocket holds none.

use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// Why the client's frames end the connection, with the close code sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a valid frame for a server to receive (unmasked, reserved bits
    /// or opcode, a fragmented or long control frame, a continuation out
    /// of place).
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A message in a kind the route does not take (binary on `/ws`).
    #[error("WebSocket message type not accepted here: {0}")]
    Unsupported(&'static str),
    /// A text message that is not UTF-8, or that holds more than one line.
    #[error("WebSocket message refused: {0}")]
    Invalid(&'static str),
}

impl FrameError {
    /// The close code that tells the client why (RFC 6455, 7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::Protocol(_) => CloseCode::Protocol,
            Self::Unsupported(_) => CloseCode::Unsupported,
            Self::Invalid(_) => CloseCode::Invalid,
        }
    }

    /// The close frame's reason text.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Protocol(reason) | Self::Unsupported(reason) | Self::Invalid(reason) => reason,
        }
    }
}

/// What one frame of the client's amounted to.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message, one line (its line end, if the client sent one,
    /// already dropped).
    Line(Vec<u8>),
    /// A whole message longer than the line limit: the core gets its first
    /// bytes, just over the limit, so it answers as to any long line.
    TooLong(Vec<u8>),
    /// A ping: answer with a pong carrying this payload.
    Ping(Vec<u8>),
    /// The client closes, with this code (if it gave one).
    Close(Option<u16>),
}

/// The reading side of one WebSocket.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// The unread start of a frame cut by a read: a header, or a whole
    /// control frame (at most 14 + 125 bytes). Empty and unallocated
    /// between frames.
    partial: Vec<u8>,
    /// The data frame whose payload is being read, piece by piece as it
    /// arrives: a long frame is never held whole.
    frame: Option<DataFrame>,
    /// The data message being assembled, up to the line limit plus a line
    /// end and one byte.
    message: Vec<u8>,
    /// A data message is open (its first frame was not final).
    in_message: bool,
    /// The open message went past the line limit; the rest is dropped.
    overflowed: bool,
    /// The open message is binary.
    binary: bool,
}

/// A data frame part-way through its payload.
#[derive(Debug, Clone, Copy)]
struct DataFrame {
    /// Payload bytes still to come.
    remaining: u64,
    mask: [u8; 4],
    /// Payload bytes already read (where the mask continues).
    offset: usize,
    is_final: bool,
}

impl FrameReader {
    /// Reads what `bytes` brings, calling `on` for each finished message or
    /// control frame in order. `max_line` is the longest line the core
    /// takes; `binary_ok` whether binary messages are lines too
    /// (`binary.ircv3.net`).
    pub fn read(
        &mut self,
        bytes: &[u8],
        max_line: usize,
        binary_ok: bool,
        mut on: impl FnMut(Incoming),
    ) -> Result<(), FrameError> {
        // A frame start cut by the last read goes in front.
        let joined;
        let mut input = if self.partial.is_empty() {
            bytes
        } else {
            let mut start = std::mem::take(&mut self.partial);
            start.extend_from_slice(bytes);
            joined = start;
            &joined[..]
        };
        while !input.is_empty() {
            if let Some(frame) = self.frame.as_mut() {
                // Payload of the current data frame.
                let take = usize::try_from(frame.remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let mut piece = input[..take].to_vec();
                unmask(&mut piece, frame.mask, frame.offset);
                frame.offset += take;
                frame.remaining -= take as u64;
                input = &input[take..];
                let done = frame.remaining == 0;
                let is_final = frame.is_final;
                self.append(&piece, max_line);
                if done {
                    self.frame = None;
                    if is_final {
                        on(self.finish(max_line)?);
                    }
                }
                continue;
            }
            let mut cursor = Cursor::new(input);
            let Some((header, length)) = FrameHeader::parse(&mut cursor)
                .map_err(|_| FrameError::Protocol("malformed frame header"))?
            else {
                self.keep_partial(input)?;
                break;
            };
            let header_len = cursor.position() as usize;
            if length > i64::MAX as u64 {
                return Err(FrameError::Protocol(
                    "a 64-bit length must leave its top bit clear",
                ));
            }
            let Some(mask) = header.mask else {
                return Err(FrameError::Protocol("client frames must be masked"));
            };
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(FrameError::Protocol("reserved bits set"));
            }
            let OpCode::Control(control) = header.opcode else {
                self.check_data_opcode(header.opcode, binary_ok)?;
                if let OpCode::Data(data @ (Data::Text | Data::Binary)) = header.opcode {
                    self.binary = data == Data::Binary;
                    self.in_message = true;
                }
                input = &input[header_len..];
                if length == 0 {
                    if header.is_final {
                        on(self.finish(max_line)?);
                    }
                } else {
                    self.frame = Some(DataFrame {
                        remaining: length,
                        mask,
                        offset: 0,
                        is_final: header.is_final,
                    });
                }
                continue;
            };
            if length > 125 || !header.is_final {
                return Err(FrameError::Protocol("control frames are short and whole"));
            }
            let length = length as usize;
            if input.len() < header_len + length {
                self.keep_partial(input)?;
                break;
            }
            let mut payload = input[header_len..header_len + length].to_vec();
            unmask(&mut payload, mask, 0);
            input = &input[header_len + length..];
            match control {
                Control::Ping => on(Incoming::Ping(payload)),
                Control::Pong => {}
                Control::Close => {
                    if payload.len() == 1 {
                        return Err(FrameError::Protocol("a close frame's code takes two bytes"));
                    }
                    if payload.len() > 2 && std::str::from_utf8(&payload[2..]).is_err() {
                        return Err(FrameError::Invalid("a close reason must be UTF-8"));
                    }
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    on(Incoming::Close(code));
                    // Nothing after a close frame counts.
                    self.partial = Vec::new();
                    return Ok(());
                }
                Control::Reserved(_) => return Err(FrameError::Protocol("reserved opcode")),
            }
        }
        Ok(())
    }

    /// Keeps the start of a frame cut by a read (a header, or a control
    /// frame, so never more than 14 + 125 bytes).
    fn keep_partial(&mut self, rest: &[u8]) -> Result<(), FrameError> {
        if rest.len() > MAX_CONTROL_FRAME {
            return Err(FrameError::Protocol("malformed frame"));
        }
        self.partial = rest.to_vec();
        Ok(())
    }

    fn check_data_opcode(&self, opcode: OpCode, binary_ok: bool) -> Result<(), FrameError> {
        match opcode {
            OpCode::Data(Data::Continue) if !self.in_message => Err(FrameError::Protocol(
                "a continuation frame with no message open",
            )),
            OpCode::Data(Data::Text | Data::Binary) if self.in_message => Err(
                FrameError::Protocol("a new message inside a fragmented one"),
            ),
            OpCode::Data(Data::Binary) if !binary_ok => Err(FrameError::Unsupported(
                "binary messages (send text frames, one line each)",
            )),
            OpCode::Data(Data::Reserved(_)) => Err(FrameError::Protocol("reserved opcode")),
            _ => Ok(()),
        }
    }

    /// Keeps a fragment of the open message, up to one byte past the limit.
    fn append(&mut self, payload: &[u8], max_line: usize) {
        // Room for the line, a CR LF the client may end it with, and one
        // byte to show it was too long.
        let keep = (max_line + 3).saturating_sub(self.message.len());
        if payload.len() > keep {
            self.overflowed = true;
        }
        self.message
            .extend_from_slice(&payload[..payload.len().min(keep)]);
    }

    /// The open message is complete: one line for the core.
    fn finish(&mut self, max_line: usize) -> Result<Incoming, FrameError> {
        let mut line = std::mem::take(&mut self.message);
        let overflowed = std::mem::take(&mut self.overflowed);
        let binary = std::mem::take(&mut self.binary);
        self.in_message = false;
        if !overflowed {
            // One trailing line end is allowed (IRC clients often send
            // CR LF inside the frame); any other is a second line.
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
        }
        // Checked on what was kept, long or not: a long message must not
        // smuggle a second line to the core ahead of its padding.
        if memchr::memchr(b'\n', &line).is_some() {
            return Err(FrameError::Invalid("one line per message"));
        }
        if overflowed || line.len() > max_line {
            line.truncate(max_line + 1);
            return Ok(Incoming::TooLong(line));
        }
        if !binary && std::str::from_utf8(&line).is_err() {
            return Err(FrameError::Invalid("a text message must be UTF-8"));
        }
        Ok(Incoming::Line(line))
    }

    /// Whether it holds nothing (no allocation either).
    pub fn is_idle(&self) -> bool {
        self.partial.capacity() == 0 && self.message.capacity() == 0 && self.frame.is_none()
    }
}

/// Whether a close code received may be sent back (RFC 6455, 7.4): the
/// defined ones an endpoint may send, and the registered and private
/// ranges; never 1005, 1006 or 1015, nor anything below 1000 or past 4999.
pub fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// The longest frame start kept between reads: a control frame with the
/// longest header.
const MAX_CONTROL_FRAME: usize = 14 + 125;

/// Removes a client's masking key from payload bytes that start `offset`
/// bytes into their frame's payload.
fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) % 4];
    }
}

/// The longest header of a server's (unmasked) frame.
pub const MAX_SERVER_HEADER: usize = 10;

/// Writes the header of a final, unmasked frame with a payload of
/// `length` bytes into `header`; returns its length.
pub fn write_header(header: &mut [u8; MAX_SERVER_HEADER], opcode: OpCode, length: usize) -> usize {
    let frame = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    };
    let mut at = &mut header[..];
    // At most ten bytes, which the array holds: cannot fail.
    let _ = frame.format(length as u64, &mut at);
    MAX_SERVER_HEADER - at.len()
}

/// Appends one unmasked frame holding `payload` (a server's frame).
pub fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let mut header = [0u8; MAX_SERVER_HEADER];
    let len = write_header(&mut header, opcode, payload.len());
    out.extend_from_slice(&header[..len]);
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit 125 bytes).
pub fn write_close(out: &mut Vec<u8>, code: CloseCode, reason: &str) {
    let mut payload = u16::from(code).to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    write_frame(out, OpCode::Control(Control::Close), &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's frame: masked, as RFC 6455 requires.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    fn read_all(reader: &mut FrameReader, bytes: &[u8]) -> Result<Vec<Incoming>, FrameError> {
        let mut got = Vec::new();
        reader.read(bytes, 16, false, |incoming| got.push(incoming))?;
        Ok(got)
    }

    #[test]
    fn frames_cut_anywhere_give_the_same_lines() {
        let mut wire = client_frame(true, 1, b"hello");
        wire.extend(client_frame(false, 1, b"wo"));
        wire.extend(client_frame(true, 9, b"p"));
        wire.extend(client_frame(true, 0, b"rld\r\n"));
        let whole = read_all(&mut FrameReader::default(), &wire).unwrap();
        assert_eq!(
            whole,
            [
                Incoming::Line(b"hello".to_vec()),
                Incoming::Ping(b"p".to_vec()),
                Incoming::Line(b"world".to_vec()),
            ]
        );
        for cut in 0..wire.len() {
            let mut reader = FrameReader::default();
            let mut got = read_all(&mut reader, &wire[..cut]).unwrap();
            got.extend(read_all(&mut reader, &wire[cut..]).unwrap());
            assert_eq!(got, whole, "cut at {cut}");
            assert!(reader.is_idle(), "nothing kept after the last frame");
        }
    }

    #[test]
    fn a_long_message_is_cut_just_past_the_limit_without_being_held() {
        let mut reader = FrameReader::default();
        let long = vec![b'x'; 100_000];
        let wire = client_frame(true, 1, &long);
        // Trickled: never more than the limit plus a few bytes held.
        let mut got = Vec::new();
        for piece in wire.chunks(1000) {
            reader.read(piece, 16, false, |i| got.push(i)).unwrap();
            assert!(reader.message.len() <= 19);
        }
        assert_eq!(got, [Incoming::TooLong(vec![b'x'; 17])]);
        assert!(reader.is_idle());
    }

    #[test]
    fn broken_frames_are_errors_with_the_right_close_code() {
        let unmasked = [0x81, 0x01, b'a'];
        let cases: [(Vec<u8>, CloseCode); 7] = [
            (unmasked.to_vec(), CloseCode::Protocol),
            (client_frame(true, 0x1 | 0x40, b"a"), CloseCode::Protocol),
            (client_frame(true, 3, b"a"), CloseCode::Protocol),
            (client_frame(false, 9, b"a"), CloseCode::Protocol),
            (client_frame(true, 0, b"a"), CloseCode::Protocol),
            (client_frame(true, 2, b"a"), CloseCode::Unsupported),
            (client_frame(true, 1, &[0xff, 0xfe]), CloseCode::Invalid),
        ];
        for (wire, code) in cases {
            let error = read_all(&mut FrameReader::default(), &wire).unwrap_err();
            assert_eq!(error.close_code(), code, "{wire:?}: {error}");
        }
        let two_lines = client_frame(true, 1, b"a\nb");
        assert_eq!(
            read_all(&mut FrameReader::default(), &two_lines).unwrap_err(),
            FrameError::Invalid("one line per message")
        );
    }

    #[test]
    fn what_the_attack_probe_found_is_refused() {
        // A long message may not carry a second line ahead of its padding.
        let mut smuggled = b"#ping a\n#ping b\n".to_vec();
        smuggled.extend([b'A'; 100]);
        let error = read_all(
            &mut FrameReader::default(),
            &client_frame(true, 1, &smuggled),
        );
        assert_eq!(
            error.unwrap_err(),
            FrameError::Invalid("one line per message")
        );
        // A one-byte close, a close reason not UTF-8, a length past 2^63.
        for wire in [
            client_frame(true, 8, &[3]),
            client_frame(true, 8, &[3, 0xe8, 0xff]),
            [
                &[0x81, 0xff][..],
                &[0x80, 0, 0, 0, 0, 0, 0, 1],
                &[1, 2, 3, 4],
            ]
            .concat(),
        ] {
            assert!(
                read_all(&mut FrameReader::default(), &wire).is_err(),
                "{wire:?}"
            );
        }
        assert!(sendable_close_code(1000) && sendable_close_code(4999));
        assert!(
            !sendable_close_code(1005) && !sendable_close_code(0) && !sendable_close_code(5000)
        );
    }

    #[test]
    fn binary_lines_where_allowed_and_close_with_its_code() {
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        let mut wire = client_frame(true, 2, &[0xff, b'a']);
        wire.extend(client_frame(true, 8, &1001u16.to_be_bytes()));
        wire.extend(client_frame(true, 1, b"after close"));
        reader.read(&wire, 16, true, |i| got.push(i)).unwrap();
        assert_eq!(
            got,
            [
                Incoming::Line(vec![0xff, b'a']),
                Incoming::Close(Some(1001))
            ]
        );
    }

    #[test]
    fn server_frames_are_unmasked_with_the_shortest_length() {
        let mut out = Vec::new();
        write_frame(&mut out, OpCode::Data(Data::Text), b"hi");
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        let mut out = Vec::new();
        write_frame(&mut out, OpCode::Data(Data::Text), &[b'x'; 300]);
        assert_eq!(&out[..4], [0x81, 126, 1, 44]);
        let mut out = Vec::new();
        write_close(&mut out, CloseCode::Normal, &"é".repeat(100));
        assert!(out.len() <= 2 + 125);
        assert_eq!(&out[..4], [0x88, (out.len() - 2) as u8, 0x03, 0xe8]);
    }
}
