//! The queue of outputs, with helpers that render events for their
//! recipients: once per recipient style in a broadcast.

use std::collections::VecDeque;

use ahash::AHashMap;
use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ErrorCode;
use crate::ids::ConnId;
use crate::io::{CloseReason, Output, Priority};
use crate::render::{self, Audience, Scene, Style, Viewer};
use crate::reply::Reply;

/// Outputs waiting for [`crate::Server::poll_output`], and who each open
/// connection is to the renderer.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: VecDeque<Output>,
    /// Every open IRC connection's style and name, kept by the server as
    /// they change, so a reply to one connection renders without the
    /// session at hand. Native connections have none (their replies name
    /// nobody), so they cost this map nothing.
    viewers: AHashMap<ConnId, Viewer>,
    /// The server name and the time of the input being handled.
    pub(crate) scene: Scene,
    /// The connection whose labeled command is being handled (IRC
    /// `labeled-response`): broadcasts reach it as separate sends, so its
    /// answer can be labeled as a whole.
    labeling: Option<ConnId>,
    /// A connection whose errors go unsaid: IRC's NOTICE is never
    /// answered with an error (RFC 2812, 3.3.2).
    pub(crate) silent: Option<ConnId>,
}

/// Where a labeled command's answer starts in the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LabelMark {
    conn: ConnId,
    start: usize,
}

impl Outbox {
    pub(crate) fn new(server_name: &str) -> Self {
        Self {
            queue: VecDeque::new(),
            viewers: AHashMap::new(),
            scene: Scene {
                server_name: server_name.into(),
                unix_ms: 0,
                client_tags: None,
            },
            labeling: None,
            silent: None,
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    pub(crate) fn push(&mut self, output: Output) {
        self.queue.push_back(output);
    }

    /// Registers or updates who a connection is.
    pub(crate) fn set_viewer(&mut self, conn: ConnId, viewer: Viewer) {
        self.viewers.insert(conn, viewer);
    }

    /// The connection's viewer, to change in place.
    pub(crate) fn viewer_mut(&mut self, conn: ConnId) -> Option<&mut Viewer> {
        self.viewers.get_mut(&conn)
    }

    /// Forgets a connection that is gone.
    pub(crate) fn forget_viewer(&mut self, conn: ConnId) {
        self.viewers.remove(&conn);
    }

    /// How `conn`'s replies are spelled.
    pub(crate) fn style_of(&self, conn: ConnId) -> Style {
        self.viewers
            .get(&conn)
            .map_or(Style::Native, |viewer| viewer.style)
    }

    /// One event rendered for one connection.
    pub(crate) fn render(&self, to: ConnId, reply: &Reply<'_>) -> Bytes {
        let viewer = self.viewers.get(&to);
        let style = viewer.map_or(Style::Native, |viewer| viewer.style);
        render::encode(style, reply, viewer, &self.scene)
    }

    /// One reply to one connection.
    pub(crate) fn send(&mut self, to: ConnId, reply: &Reply<'_>) {
        self.send_with(to, reply, Priority::Normal);
    }

    /// One reply to one connection, at a chosen priority.
    pub(crate) fn send_with(&mut self, to: ConnId, reply: &Reply<'_>, priority: Priority) {
        let bytes = self.render(to, reply);
        self.send_bytes(to, bytes, priority);
    }

    /// Already-rendered bytes to one connection (nothing if empty: some
    /// events have no spelling in some dialects).
    pub(crate) fn send_bytes(&mut self, to: ConnId, bytes: Bytes, priority: Priority) {
        if bytes.is_empty() {
            return;
        }
        self.queue.push_back(Output::Send {
            to,
            bytes,
            priority,
        });
    }

    /// Several replies to one connection, as one output (a listing arrives whole).
    pub(crate) fn send_block<'a>(
        &mut self,
        to: ConnId,
        replies: impl IntoIterator<Item = Reply<'a>>,
    ) {
        let mut block = BytesMut::new();
        for reply in replies {
            block.put(self.render(to, &reply));
        }
        self.send_bytes(to, block.freeze(), Priority::Normal);
    }

    /// An error reply.
    pub(crate) fn error(&mut self, to: ConnId, code: ErrorCode, text: &str) {
        self.error_about(to, code, None, text);
    }

    /// An error reply about a name (IRC numerics carry it).
    pub(crate) fn error_about(
        &mut self,
        to: ConnId,
        code: ErrorCode,
        subject: Option<&str>,
        text: &str,
    ) {
        if self.silent == Some(to) {
            return;
        }
        self.send(
            to,
            &Reply::Error {
                code,
                subject,
                text,
            },
        );
    }

    /// The same event to every audience, encoded once per style.
    pub(crate) fn broadcast(
        &mut self,
        audiences: &[Audience],
        mut except: Option<ConnId>,
        reply: &Reply<'_>,
        priority: Priority,
    ) {
        if let Some(labeled) = self.labeling
            && except.is_none()
            && audiences
                .iter()
                .any(|a| a.to.binary_search(&labeled).is_ok())
        {
            // Its copy goes separately, to be part of its labeled answer.
            self.send_with(labeled, reply, priority);
            except = Some(labeled);
        }
        for audience in audiences {
            let nobody = match except {
                Some(skip) => audience.to.iter().all(|&c| c == skip),
                None => audience.to.is_empty(),
            };
            if nobody {
                continue;
            }
            let bytes = render::encode(audience.style, reply, None, &self.scene);
            if bytes.is_empty() {
                continue;
            }
            self.queue.push_back(Output::Broadcast {
                to: audience.to.clone(),
                except,
                bytes,
                priority,
            });
        }
    }

    /// The same event to a set of connections that is not one room's
    /// members (a quit or nick change seen in several rooms).
    pub(crate) fn broadcast_to(
        &mut self,
        to: impl IntoIterator<Item = ConnId>,
        except: Option<ConnId>,
        reply: &Reply<'_>,
        priority: Priority,
    ) {
        let members = to
            .into_iter()
            .map(|conn| (conn, self.style_of(conn)))
            .collect::<Vec<_>>();
        let audiences = render::audiences(members.into_iter());
        self.broadcast(&audiences, except, reply, priority);
    }

    /// Starts collecting `conn`'s answer to a labeled command.
    pub(crate) fn begin_label(&mut self, conn: ConnId) -> LabelMark {
        self.labeling = Some(conn);
        LabelMark {
            conn,
            start: self.queue.len(),
        }
    }

    /// Ends a labeled command: what was sent to its connection since
    /// [`Outbox::begin_label`] becomes one send, relabeled by `finish`
    /// (given the answer's text, possibly empty), in the place of the
    /// first of them (before a close, if the command closed it).
    pub(crate) fn end_label(&mut self, mark: LabelMark, finish: impl FnOnce(&str) -> String) {
        self.labeling = None;
        let mut answer = String::new();
        let mut first = None;
        let mut index = mark.start;
        while index < self.queue.len() {
            match &self.queue[index] {
                Output::Send { to, bytes, .. } if *to == mark.conn => {
                    answer.push_str(&String::from_utf8_lossy(bytes));
                    if first.is_none() {
                        first = Some(index);
                        index += 1;
                    } else {
                        self.queue.remove(index);
                    }
                }
                _ => index += 1,
            }
        }
        let labeled = Bytes::from(finish(&answer));
        match first.and_then(|at| self.queue.get_mut(at)) {
            Some(Output::Send { bytes, .. }) => *bytes = labeled,
            _ => {
                // No answer: the label comes back on its own, before any
                // close of the connection.
                let close =
                    self.queue.iter().skip(mark.start).position(
                        |o| matches!(o, Output::Close { conn, .. } if *conn == mark.conn),
                    );
                let send = Output::Send {
                    to: mark.conn,
                    bytes: labeled,
                    priority: Priority::Normal,
                };
                match close {
                    Some(at) => self.queue.insert(mark.start + at, send),
                    None => self.queue.push_back(send),
                }
            }
        }
    }

    /// Flush, then close.
    pub(crate) fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.queue.push_back(Output::Close { conn, reason });
    }
}
