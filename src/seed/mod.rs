//! The seeds' own raw protocols, byte for byte, on both sides: the listeners `sockit serve`
//! opens with `--seed-echo`, `--seed-exec`, `--seed-upload` and `--udp-echo`, and the client
//! calls behind `sockit echo --seed/--udp`, `exec --seed` and `put --seed`.
//!
//! These protocols are the seeds' and keep their limits (one `recv(1024)` per command, no
//! framing of requests); sockit's own protocol lives in [`crate::service`].

pub mod echo;
pub mod exec;
pub mod upload;

/// The seeds' receive size: `recv(1024)` / `recvfrom(1024)`.
pub const SEED_BUFSIZE: usize = 1024;
