//! The one integration-test binary: real sockets on 127.0.0.1 port 0, real processes.

mod common;
mod cli;
mod codec;
mod files;
mod hostile;
mod native;
mod seeds;
mod framework;
mod udp;
