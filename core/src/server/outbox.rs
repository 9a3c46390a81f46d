//! The queue of outputs, with helpers that encode replies once.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ErrorCode;
use crate::ids::ConnId;
use crate::io::{CloseReason, Output, Priority};
use crate::native;
use crate::reply::Reply;

/// Outputs waiting for [`crate::Server::poll_output`].
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Output>,
}

impl Outbox {
    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    pub(crate) fn push(&mut self, output: Output) {
        self.queue.push_back(output);
    }

    /// One reply to one connection.
    pub(crate) fn send(&mut self, to: ConnId, reply: &Reply<'_>) {
        self.send_with(to, reply, Priority::Normal);
    }

    /// One reply to one connection, at a chosen priority.
    pub(crate) fn send_with(&mut self, to: ConnId, reply: &Reply<'_>, priority: Priority) {
        self.queue.push_back(Output::Send {
            to,
            bytes: native::encode(reply),
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
            block.put(native::encode(&reply));
        }
        self.queue.push_back(Output::Send {
            to,
            bytes: block.freeze(),
            priority: Priority::Normal,
        });
    }

    /// An error reply.
    pub(crate) fn error(&mut self, to: ConnId, code: ErrorCode, text: &str) {
        self.send(to, &Reply::Error { code, text });
    }

    /// The same reply to a set of connections, encoded once.
    pub(crate) fn broadcast(
        &mut self,
        to: Arc<[ConnId]>,
        except: Option<ConnId>,
        reply: &Reply<'_>,
        priority: Priority,
    ) {
        self.broadcast_bytes(to, except, native::encode(reply), priority);
    }

    /// Already-encoded bytes to a set of connections.
    pub(crate) fn broadcast_bytes(
        &mut self,
        to: Arc<[ConnId]>,
        except: Option<ConnId>,
        bytes: Bytes,
        priority: Priority,
    ) {
        let nobody_else = match except {
            Some(skip) => to.iter().all(|&c| c == skip),
            None => to.is_empty(),
        };
        if nobody_else {
            return;
        }
        self.queue.push_back(Output::Broadcast {
            to,
            except,
            bytes,
            priority,
        });
    }

    /// Flush, then close.
    pub(crate) fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.queue.push_back(Output::Close { conn, reason });
    }
}
