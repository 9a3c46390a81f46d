//! Benchmarks for chatd: the load generator behind `chatd bench` and the core
//! microbenchmarks.
//!
//! Intentionally empty for now: the benchmarks need a backend to measure.
