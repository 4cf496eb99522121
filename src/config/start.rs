//! Binding and serving the listeners that [`Settings`] name, and stopping them again.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{Settings, failed, refused};
use crate::error::{Error, Result};
use crate::ftp_door::Ftp;
use crate::net::{Endpoint, Listener, bind_udp, resolve};
use crate::ops::shape::ServerRates;
use crate::ops::{self, Health, health::ListenerUp};
use crate::runner::{Confinement, Sandbox};
use crate::seed;
use crate::server::{ServerConfig, Shutdown, TcpService, UdpService, serve_tcp, serve_udp};
use crate::service::Native;
use crate::service::chat::Chat;
use crate::service::session::FileService;
use crate::service::transport::Transport;
use crate::storage::s3::{Bucket, S3Options};
use crate::storage::writers::Writers;
use crate::tls::Identity;

/// The listeners of a started server; [`Running::stop`] ends them.
#[derive(Debug)]
pub struct Running {
    /// What listens where, in start order: (`"native protocol"`, `"127.0.0.1:9900"`), ...
    pub listeners: Vec<(&'static str, String)>,
    /// The native port's TLS certificate fingerprint (`SHA256:…`).
    pub fingerprint: Option<String>,
    shutdown: Shutdown,
    grace: Duration,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
    /// Whether each listener and back-end is up (`/healthz`).
    health: Arc<Health>,
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
    /// A listener task that failed ([`Error::Io`]) or panicked ([`Error::Internal`]).
    pub async fn stop(mut self) -> Result<bool> {
        let clean = self.shutdown.drain(self.grace).await;
        for task in std::mem::take(&mut self.tasks) {
            task.await
                .map_err(|e| Error::Internal(format!("listener task: {e}")))??;
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
/// [`Error::Config`]: a refused setting (seed-exec without `--allow-exec` or off loopback), a
/// data folder that cannot be created or whose users cannot be opened; [`Error::Io`]: bind
/// errors. Nothing is left listening on error (dropping the partly built [`Running`] stops
/// what had started).
pub async fn start(settings: Settings) -> Result<Running> {
    crate::net::raise_fd_limit();
    if let Some(exec) = &settings.seed_exec {
        if !settings.allow_exec {
            return Err(refused(
                "--seed-exec runs commands for anyone who connects: add --allow-exec to allow it",
            ));
        }
        if let Endpoint::Tcp(addr) = exec {
            let ip = resolve(addr).await?.ip();
            if !ip.is_loopback() {
                return Err(refused(format!(
                    "--seed-exec {addr}: refusing to bind a non-loopback address ({ip}); the seed protocol has no login"
                )));
            }
        }
    }
    std::fs::create_dir_all(&settings.data).map_err(|e| {
        failed(
            format!("creating the data folder {}", settings.data.display()),
            e,
        )
    })?;
    if settings.metrics.is_some() {
        // Before the first listener, so that every connection is counted.
        ops::metrics::install()?;
        ops::metrics::serving(ops::metrics::Door::Native);
    }
    let config = Arc::new(settings.server.clone());
    let mut running = Running {
        listeners: Vec::new(),
        fingerprint: None,
        shutdown: Shutdown::new(),
        grace: config.grace,
        tasks: Vec::new(),
        health: Health::new(),
    };
    let users = (settings.users.as_ref(), settings.quota_lease);
    let files = FileService::open(&settings.data, users).map_err(|e| {
        failed(
            format!("opening the users and homes in {}", settings.data.display()),
            e,
        )
    })?;
    let identity = match &settings.tls_files {
        Some((cert, key)) => Identity::from_files(cert, key)?,
        None => Identity::load_or_create(&settings.data)?,
    };
    let transport = Transport::new(&identity, settings.allow_plaintext)?;
    running.fingerprint = Some(transport.fingerprint().to_owned());
    running.health.users(files.users.clone());
    let files = match &settings.store {
        Some(options) => {
            // Servers sharing the store and this data folder keep their uploads apart.
            // In PostgreSQL when the users are: servers anywhere then, not one machine.
            let writers = match files.users.writer_locks() {
                Some(locks) => Writers::Postgres(locks),
                None => Writers::Files(settings.data.join("locks")),
            };
            let bucket = open_store(options, writers, settings.allow_exec).await?;
            running.health.store(bucket.clone());
            // Not one of the server's tasks: it has nothing to finish at shutdown.
            tokio::spawn(clean_unfinished(bucket.clone(), options.keep_unfinished));
            files.with_bucket(bucket)
        }
        None => {
            running.health.folder(settings.data.join("homes"));
            files
        }
    };
    let files = Arc::new(files.with_max_sessions_per_user(settings.max_sessions_per_user));
    let mut native = Native::with_files(files.clone())
        .with_transport(transport.clone())
        .with_rates(ServerRates::new(settings.rates))
        .with_max_read_ahead(settings.max_read_ahead);
    let sandbox = match settings.allow_exec {
        true => Some(Arc::new(exec_sandbox(&settings).await?)),
        false => None,
    };
    if let Some(sandbox) = &sandbox {
        native = native.with_exec(settings.exec, sandbox.clone());
    }
    running
        .tcp("native protocol", &settings.listen, native, &config)
        .await?;
    if let Some(endpoint) = &settings.seed_echo {
        running
            .tcp("seed-echo", endpoint, seed::echo::Tcp {}, &config)
            .await?;
    }
    if let (Some(endpoint), Some(sandbox)) = (&settings.seed_exec, &sandbox) {
        let exec = seed::command::Exec {
            limits: settings.exec,
            sandbox: sandbox.clone(),
        };
        running.tcp("seed-exec", endpoint, exec, &config).await?;
    }
    if let Some(endpoint) = &settings.seed_upload {
        let upload = seed::upload::Upload::new(&settings.data)?;
        running
            .tcp("seed-upload", endpoint, upload, &config)
            .await?;
    }
    if let Some(endpoint) = &settings.http {
        let http = crate::httpd::Http::new(files.clone(), transport.clone(), &config);
        running.tcp("http", endpoint, http, &config).await?;
        ops::metrics::serving(ops::metrics::Door::Http);
    }
    if let Some(addr) = &settings.udp_echo {
        running.udp("udp-echo", addr, seed::echo::Udp {}).await?;
    }
    if let Some(addr) = &settings.udp_time {
        running.udp("udp-time", addr, settings.time.clone()).await?;
    }
    if let Some(addr) = &settings.udp_chat {
        running
            .udp("udp-chat", addr, Chat::new(settings.chat))
            .await?;
    }
    if let Some(endpoint) = &settings.metrics {
        running.metrics(endpoint).await?;
    }
    if let Some(addr) = &settings.ftp {
        let ftp = Ftp::new(
            files.clone(),
            crate::ftp_door::tls_config(&identity)?,
            settings.ftp_passive_ports.clone(),
            settings.allow_plaintext,
        );
        let endpoint = Endpoint::Tcp(addr.clone());
        running.tcp("ftp", &endpoint, ftp, &config).await?;
        ops::metrics::serving(ops::metrics::Door::Ftp);
    }
    Ok(running)
}

/// The sandbox of remote commands, tried on this machine (the helper is this very binary),
/// and a check that it keeps the server's own files from commands.
///
/// # Errors
/// [`Error::Config`]: the machine lacks part of the sandbox and `--exec-unconfined` was not
/// given, or the data folder or TLS files lie under a path every command may read.
async fn exec_sandbox(settings: &Settings) -> Result<Sandbox> {
    let helper = std::env::current_exe().map_err(|e| failed("finding the sockit binary", e))?;
    let sandbox = Sandbox::start(helper, settings.exec_sandbox)
        .await
        .map_err(refused)?;
    let mut own = vec![("the data folder", settings.data.clone())];
    if let Some((cert, key)) = &settings.tls_files {
        own.extend([
            ("the TLS certificate", cert.clone()),
            ("the TLS key", key.clone()),
        ]);
    }
    for (what, path) in own {
        if let Some(granted) = sandbox.exposes(&path) {
            return Err(refused(format!(
                "{what} {} lies under {}, which every remote command may read: move it, or \
                 run without --allow-exec",
                path.display(),
                granted.display()
            )));
        }
    }
    let network = if sandbox.network() { "on" } else { "off" };
    match (sandbox.confinement(), sandbox.lacking()) {
        (Confinement::Full, _) => info!(
            network,
            "exec: commands run in their sandbox (namespaces, Landlock, limits)"
        ),
        (Confinement::Partial, why) => warn!(
            network,
            "exec: --exec-unconfined: this machine lacks part of the sandbox ({}); commands \
             get only the parts it has, and may reach files of other users",
            why.unwrap_or("?")
        ),
        (Confinement::None, why) => warn!(
            "exec: --exec-unconfined: no sandbox here ({}); commands run as plain `sh -c` \
             with the server's rights, and jobs that detach outlive them",
            why.unwrap_or("?")
        ),
    }
    Ok(sandbox)
}

impl Running {
    /// Binds `endpoint` and serves `service` on it, as listener `what`.
    async fn tcp<S: TcpService>(
        &mut self,
        what: &'static str,
        endpoint: &Endpoint,
        service: S,
        config: &Arc<ServerConfig>,
    ) -> Result<()> {
        let listener = Listener::bind(endpoint).await?;
        let addr = listener.local_endpoint()?.to_string();
        let up = self.health.listener(what, &addr);
        self.listeners.push((what, addr));
        let server = serve_tcp(
            listener,
            Arc::new(service),
            config.clone(),
            self.shutdown.clone(),
        );
        self.tasks.push(tokio::spawn(watched(server, up)));
        Ok(())
    }

    /// Binds the UDP `addr` and serves `service` on it, as listener `what`.
    async fn udp<S: UdpService>(
        &mut self,
        what: &'static str,
        addr: &str,
        service: S,
    ) -> Result<()> {
        let socket = bind_udp(addr).await?;
        let addr = socket.local_addr()?.to_string();
        let up = self.health.listener(what, &addr);
        self.listeners.push((what, addr));
        let server = serve_udp(socket, Arc::new(service), self.shutdown.clone());
        self.tasks.push(tokio::spawn(watched(server, up)));
        Ok(())
    }

    /// Serves `/metrics` and `/healthz` on `endpoint`, as listener `"metrics"`.
    async fn metrics(&mut self, endpoint: &Endpoint) -> Result<()> {
        let listener = Listener::bind(endpoint).await?;
        self.listeners
            .push(("metrics", listener.local_endpoint()?.to_string()));
        let server = ops::endpoint::serve(listener, self.health.clone(), self.shutdown.clone());
        self.tasks.push(tokio::spawn(server));
        Ok(())
    }
}

/// A listener's task: `server`, marked down in `/healthz` once it ends.
async fn watched(
    server: impl Future<Output = std::io::Result<()>>,
    up: ListenerUp,
) -> std::io::Result<()> {
    let served = server.await;
    up.down();
    served
}

/// Connects to the object store the homes live in, and checks that it answers.
///
/// # Errors
/// [`Error::Config`]: a bad `--store`, missing credentials, a store that does not answer,
/// or exec asked for (a command runs in a local folder, which such homes are not).
async fn open_store(options: &S3Options, writers: Writers, allow_exec: bool) -> Result<Bucket> {
    if allow_exec {
        return Err(Error::Config {
            message: "--allow-exec needs the homes in a local folder: a command cannot run \
                      inside an object store (leave out --store or --allow-exec)"
                .into(),
            source: None,
        });
    }
    let bucket = Bucket::connect(options, writers)?;
    bucket.check().await.map_err(|e| Error::Config {
        message: format!("the object store {} does not answer", bucket.url()),
        source: Some(Box::new(e)),
    })?;
    Ok(bucket)
}

/// Aborts the unfinished uploads older than `keep`, at start and then every hour.
async fn clean_unfinished(bucket: Bucket, keep: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match bucket.clean_abandoned(keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                uploads = n,
                "aborted unfinished uploads to the object store"
            ),
            Err(e) => tracing::warn!("cleaning unfinished uploads: {e}"),
        }
    }
}
