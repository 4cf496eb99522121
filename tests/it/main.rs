//! The one integration-test binary: real sockets on 127.0.0.1 port 0, real processes.

mod accounts;
mod bench;
mod cli;
mod cli_client;
mod codec;
mod common;
mod conn_limits;
mod digests;
mod door_ftp;
mod exec;
mod files;
mod folders;
mod framework;
mod ftp;
mod hostile;
mod keys;
mod lab;
mod native;
mod netns;
mod seeds;
mod storage_rules;
mod tls;
mod udp;
