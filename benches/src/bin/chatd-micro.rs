//! Core microbenchmarks, no sockets (also `chatd bench micro`).
//!
//! ```sh
//! cargo build --release --bin chatd-micro && target/release/chatd-micro
//! ```

fn main() {
    chatd_benches::micro::run();
}
