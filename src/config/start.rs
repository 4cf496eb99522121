//! Binding and serving the listeners that [`Settings`] name, and stopping them again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::task::JoinHandle;

use super::Settings;
use crate::net::{Endpoint, Listener, bind_udp, resolve};
use crate::server::{ServerConfig, Shutdown, TcpService, UdpService, serve_tcp, serve_udp};
use crate::service::Native;
use crate::service::chat::Chat;
use crate::service::session::FileService;

/// The listeners of a started server; [`Running::stop`] ends them.
#[derive(Debug)]
pub struct Running {
    /// What listens where, in start order: (`"native protocol"`, `"127.0.0.1:9900"`), ...
    pub listeners: Vec<(&'static str, String)>,
    shutdown: Shutdown,
    grace: Duration,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// The address of the first listener named `what`.
    pub fn addr(&self, what: &str) -> Option<&str> {
        self.listeners
            .iter()
            .find(|(w, _)| *w == what)
            .map(|(_, a)| a.as_str())
    }

    /// Stops every listener and waits up to the grace period for connections; returns
    /// whether all ended in time.
    ///
    /// # Errors
    /// A listener task that failed or panicked.
    pub async fn stop(mut self) -> Result<bool> {
        let clean = self.shutdown.drain(self.grace).await;
        for task in std::mem::take(&mut self.tasks) {
            task.await.context("listener task")??;
        }
        Ok(clean)
    }
}

impl Drop for Running {
    /// Listeners started before a later one failed to bind must not outlive the error.
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Checks `settings`, then binds and serves every listener they name.
///
/// # Errors
/// A refused setting (seed-exec without `--allow-exec` or off loopback), a data folder that
/// cannot be created, and bind errors. Nothing is left listening on error (dropping the
/// partly built [`Running`] stops what had started).
pub async fn start(settings: Settings) -> Result<Running> {
    if let Some(exec) = &settings.seed_exec {
        if !settings.allow_exec {
            bail!(
                "--seed-exec runs commands for anyone who connects: add --allow-exec to allow it"
            );
        }
        if let Endpoint::Tcp(addr) = exec {
            let ip = resolve(addr).await?.ip();
            if !ip.is_loopback() {
                bail!(
                    "--seed-exec {addr}: refusing to bind a non-loopback address ({ip}); the seed protocol has no login"
                );
            }
        }
    }
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("creating the data folder {}", settings.data.display()))?;
    let config = Arc::new(settings.server.clone());
    let mut running = Running {
        listeners: Vec::new(),
        shutdown: Shutdown::new(),
        grace: config.grace,
        tasks: Vec::new(),
    };
    let files = FileService::open(&settings.data)
        .with_context(|| format!("opening the users and homes in {}", settings.data.display()))?;
    let listener = Listener::bind(&settings.listen).await?;
    running
        .listeners
        .push(("native protocol", listener.local_endpoint()?.to_string()));
    running.tasks.push(spawn_tcp(
        listener,
        Native::with_files(Arc::new(files)),
        config.clone(),
        running.shutdown.clone(),
    ));
    let seeds: [(&'static str, &Option<Endpoint>); 3] = [
        ("seed-echo", &settings.seed_echo),
        ("seed-exec", &settings.seed_exec),
        ("seed-upload", &settings.seed_upload),
    ];
    for (what, endpoint) in seeds {
        let Some(endpoint) = endpoint else { continue };
        let listener = Listener::bind(endpoint).await?;
        running
            .listeners
            .push((what, listener.local_endpoint()?.to_string()));
        let (shutdown, config) = (running.shutdown.clone(), config.clone());
        running.tasks.push(match what {
            "seed-echo" => spawn_tcp(listener, crate::seed::echo::Tcp {}, config, shutdown),
            "seed-exec" => spawn_tcp(
                listener,
                crate::seed::exec::Exec {
                    limits: settings.exec,
                },
                config,
                shutdown,
            ),
            _ => spawn_tcp(
                listener,
                crate::seed::upload::Upload::new(&settings.data)?,
                config,
                shutdown,
            ),
        });
    }
    let udps: [(&'static str, &Option<String>); 3] = [
        ("udp-echo", &settings.udp_echo),
        ("udp-time", &settings.udp_time),
        ("udp-chat", &settings.udp_chat),
    ];
    for (what, addr) in udps {
        let Some(addr) = addr else { continue };
        let socket = bind_udp(addr).await?;
        let local: SocketAddr = socket.local_addr()?;
        running.listeners.push((what, local.to_string()));
        let shutdown = running.shutdown.clone();
        running.tasks.push(match what {
            "udp-echo" => spawn_udp(socket, crate::seed::echo::Udp {}, shutdown),
            "udp-time" => spawn_udp(socket, settings.time.clone(), shutdown),
            _ => spawn_udp(socket, Chat::new(settings.chat), shutdown),
        });
    }
    Ok(running)
}

fn spawn_tcp<S: TcpService>(
    listener: Listener,
    service: S,
    config: Arc<ServerConfig>,
    shutdown: Shutdown,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(serve_tcp(listener, Arc::new(service), config, shutdown))
}

fn spawn_udp<S: UdpService>(
    socket: tokio::net::UdpSocket,
    service: S,
    shutdown: Shutdown,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(serve_udp(socket, Arc::new(service), shutdown))
}
