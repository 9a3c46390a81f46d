//! The native line dialect: what `nc` users type and read.
//!
//! Parsing ([`parse`]) and rendering ([`render`]) live here and nowhere
//! else; the state machine only sees [`crate::Command`] and
//! [`crate::Reply`]. The `#` that starts a native command never reaches
//! the model.

pub mod help;
pub mod parse;
pub mod render;

pub use parse::{ParseError, parse};
pub use render::encode;
