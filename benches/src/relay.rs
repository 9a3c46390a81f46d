//! A bare relay: the trivial sink that measures the load generator's own
//! ceiling. No chat features: a `JOIN ROOM` line puts a connection in a
//! room, and every other line is copied verbatim to the other members of
//! the sender's room. One thread, level-triggered `polling`, and one
//! coalesced write per receiver per loop turn, so its cost per delivery is
//! close to the kernel's alone.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};

/// The listener's key (`usize::MAX` is polling's own); connections use
/// their slot index.
const LISTENER: usize = usize::MAX - 1;
/// Bytes a receiver may have waiting before it is dropped: a relay that
/// buffered without bound could exhaust memory on a stuck reader.
const MAX_PENDING: usize = 64 * 1024 * 1024;

struct Client {
    stream: TcpStream,
    room: Option<String>,
    partial: Vec<u8>,
    out: Vec<u8>,
    /// Writable interest is registered (output is left over).
    waiting: bool,
}

/// Serves on `listener` until the process is killed.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let poller = Poller::new()?;
    // SAFETY: the listener outlives the poller's use of it (both live until
    // this function returns, and the poller is declared after it).
    #[allow(unsafe_code)]
    unsafe {
        poller.add_with_mode(&listener, Event::readable(LISTENER), PollMode::Level)?;
    }
    let mut clients: Vec<Option<Client>> = Vec::new();
    let mut rooms: HashMap<String, Vec<usize>> = HashMap::new();
    let mut events = Events::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut dirty: Vec<usize> = Vec::new();
    loop {
        events.clear();
        poller.wait(&mut events, Some(Duration::from_secs(1)))?;
        for event in events.iter() {
            if event.key == LISTENER {
                accept_all(&listener, &poller, &mut clients)?;
                continue;
            }
            if event.writable {
                dirty.push(event.key);
            }
            if event.readable
                && !read_client(event.key, &mut clients, &mut rooms, &mut buffer, &mut dirty)
            {
                drop_client(event.key, &poller, &mut clients, &mut rooms);
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty.drain(..) {
            if !flush_client(key, &poller, &mut clients) {
                drop_client(key, &poller, &mut clients, &mut rooms);
            }
        }
    }
}

fn accept_all(
    listener: &TcpListener,
    poller: &Poller,
    clients: &mut Vec<Option<Client>>,
) -> io::Result<()> {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            // Out of files or similar: refuse this one, keep serving.
            Err(_) => return Ok(()),
        };
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let key = clients.iter().position(Option::is_none).unwrap_or_else(|| {
            clients.push(None);
            clients.len() - 1
        });
        // SAFETY: the stream lives in `clients` and is deleted from the
        // poller before it is dropped (`drop_client`).
        #[allow(unsafe_code)]
        unsafe {
            poller.add_with_mode(&stream, Event::readable(key), PollMode::Level)?;
        }
        clients[key] = Some(Client {
            stream,
            room: None,
            partial: Vec::new(),
            out: Vec::new(),
            waiting: false,
        });
    }
}

/// Reads what is there and relays whole lines. False: the client is gone.
fn read_client(
    key: usize,
    clients: &mut [Option<Client>],
    rooms: &mut HashMap<String, Vec<usize>>,
    buffer: &mut [u8],
    dirty: &mut Vec<usize>,
) -> bool {
    let Some(client) = clients[key].as_mut() else {
        return true;
    };
    let n = match client.stream.read(buffer) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            return true;
        }
        Err(_) => return false,
    };
    let mut input = std::mem::take(&mut client.partial);
    input.extend_from_slice(&buffer[..n]);
    let mut start = 0;
    while let Some(end) = input[start..].iter().position(|&b| b == b'\n') {
        let line = &input[start..start + end + 1];
        start += end + 1;
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if let Some(room) = text.strip_prefix(b"JOIN ") {
            let room = String::from_utf8_lossy(room).into_owned();
            rooms.entry(room.clone()).or_default().push(key);
            if let Some(client) = clients[key].as_mut() {
                client.room = Some(room);
            }
            continue;
        }
        let Some(room) = clients[key].as_ref().and_then(|c| c.room.clone()) else {
            continue;
        };
        for &member in rooms.get(&room).map(Vec::as_slice).unwrap_or_default() {
            if member == key {
                continue;
            }
            if let Some(receiver) = clients[member].as_mut() {
                receiver.out.extend_from_slice(line);
                dirty.push(member);
            }
        }
    }
    input.drain(..start);
    if let Some(client) = clients[key].as_mut() {
        client.partial = input;
    }
    true
}

/// One write of everything queued. False: the client is gone or stuck.
fn flush_client(key: usize, poller: &Poller, clients: &mut [Option<Client>]) -> bool {
    let Some(client) = clients[key].as_mut() else {
        return true;
    };
    while !client.out.is_empty() {
        match client.stream.write(&client.out) {
            Ok(0) => return false,
            Ok(n) => {
                client.out.drain(..n);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    if client.out.len() > MAX_PENDING {
        return false;
    }
    let waiting = !client.out.is_empty();
    if waiting != client.waiting {
        client.waiting = waiting;
        let interest = if waiting {
            Event::all(key)
        } else {
            Event::readable(key)
        };
        if poller
            .modify_with_mode(&client.stream, interest, PollMode::Level)
            .is_err()
        {
            return false;
        }
    }
    true
}

fn drop_client(
    key: usize,
    poller: &Poller,
    clients: &mut [Option<Client>],
    rooms: &mut HashMap<String, Vec<usize>>,
) {
    if let Some(client) = clients[key].take() {
        let _ = poller.delete(&client.stream);
        if let Some(members) = client.room.and_then(|room| rooms.get_mut(&room)) {
            members.retain(|&m| m != key);
        }
    }
}
