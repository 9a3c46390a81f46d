//! The IRC dialect (RFC 1459/2812 and the modern client protocol):
//! the wire format, masks, capabilities, numerics, and rendering of the
//! server's events as IRC lines. What IRC commands mean to the model is
//! decided in the server (`server/irc/`); this module only reads and
//! writes IRC.

pub mod caps;
pub mod mask;
pub mod message;
#[allow(missing_docs)] // named as the specifications name them; the names are the docs
pub mod numeric;
pub(crate) mod render;
