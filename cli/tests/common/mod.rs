//! What the CLI's process tests share.

/// `chatd serve` with its native listener on a free loopback port and no
/// other listener, so parallel tests never fight over the IRC and HTTP
/// default ports.
pub(crate) const SERVE_NATIVE_ONLY: [&str; 7] = [
    "serve",
    "--bind",
    "127.0.0.1:0",
    "--irc-bind",
    "none",
    "--http-bind",
    "none",
];
