//! `enfeed serve`: the HTTP API on a TCP listener, optionally the backend feeds on a mutual-TLS
//! listener, with data-prep and the consumer on schedules.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use enfeed::Backend;
use enfeed::adapters::listener::{self, Limits};
use enfeed::adapters::local::secrets;
use enfeed::domain::recent_errors::RecentErrors;
use enfeed::domain::secret::check_admin_token;
use enfeed::entry::api::{self, ApiSettings};
use enfeed::services::consumer::Poll;
use ipnet::IpNet;

use crate::Region;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    region: Region,

    /// Address for the HTTP API (uploads, public feed, admin).
    #[arg(long, env = "ENFEED_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Bearer token of the admin routes. Without it, one is generated on first start and kept
    /// in `<data>/admin-token`.
    #[arg(long, env = "ENFEED_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,

    /// Address of the mutual-TLS listener for peer backends (needs the three TLS flags).
    #[arg(long, env = "ENFEED_BACKEND_LISTEN", requires_all = ["tls_cert", "tls_key", "client_ca"])]
    backend_listen: Option<SocketAddr>,

    /// PEM certificate (chain) of the backend listener.
    #[arg(long, env = "ENFEED_TLS_CERT")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of the backend listener.
    #[arg(long, env = "ENFEED_TLS_KEY")]
    tls_key: Option<PathBuf>,

    /// PEM CA that peers' client certificates must chain to; the certificate's common name is
    /// the peer's region.
    #[arg(long, env = "ENFEED_CLIENT_CA")]
    client_ca: Option<PathBuf>,

    /// Seconds between consumer runs (each peer is still polled no sooner than it asks).
    #[arg(long, env = "ENFEED_CONSUMER_INTERVAL", default_value_t = 300)]
    consumer_interval: u64,

    /// Proxies in front of the HTTP API (comma-separated CIDRs, e.g. a TLS terminator) whose
    /// `X-Forwarded-For` names the client for rate limiting.
    #[arg(long, env = "ENFEED_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<IpNet>,

    /// Origins of the console's static pages (comma-separated, e.g.
    /// `https://console.example`) that may call the API from the browser with a bearer token
    /// (CORS; see docs/console.md).
    #[arg(
        long = "console-origin",
        env = "ENFEED_CONSOLE_ORIGINS",
        value_delimiter = ','
    )]
    console_origins: Vec<String>,

    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, env = "ENFEED_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,

    /// Seconds a client has to send a request's body.
    #[arg(long, env = "ENFEED_BODY_TIMEOUT", default_value_t = 10)]
    body_timeout: u64,

    /// Connections open at once on each listener; more are closed on arrival (and logged).
    #[arg(long, env = "ENFEED_MAX_CONNECTIONS", default_value_t = 512)]
    max_connections: usize,

    /// Seconds between refreshes of the trust registry (with --registry).
    #[arg(long, env = "ENFEED_REGISTRY_REFRESH", default_value_t = 3600)]
    registry_refresh: u64,
}

/// Serves the region, keeping the warnings and errors logged in `recent_errors` for the
/// operator's console.
pub async fn run(args: ServeArgs, recent_errors: Arc<RecentErrors>) -> anyhow::Result<()> {
    let data = args.region.data.clone();
    let mut backend = args.region.open().await?;
    backend.recent_errors = recent_errors;
    let backend = Arc::new(backend);
    let admin_token = match args.admin_token {
        Some(token) => {
            check_admin_token(&token).context("--admin-token (ENFEED_ADMIN_TOKEN)")?;
            token
        }
        None => {
            let token = secrets::admin_token(&data)?;
            tracing::info!(
                "admin routes and the console take the bearer token in {}",
                data.join(secrets::ADMIN_TOKEN).display()
            );
            token
        }
    };
    let access = backend.access(admin_token);
    let settings = ApiSettings {
        trusted_proxies: args.trusted_proxies,
        body_timeout: Duration::from_secs(args.body_timeout),
        redirect_chunks: false,
        console_origins: api::console_origins(&args.console_origins)?,
    };
    let app = api::router(backend.clone(), access, settings);
    let limits = Limits {
        header_timeout: Duration::from_secs(args.header_timeout),
        handshake_timeout: Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections,
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(
        region = %backend.config.region,
        listen = %address,
        console = %format!("http://{address}/console/"),
        "serving"
    );
    if let (Some(address), Some(cert), Some(key), Some(ca)) = (
        args.backend_listen,
        &args.tls_cert,
        &args.tls_key,
        &args.client_ca,
    ) {
        let tls = enfeed::adapters::tls::listener::server_config(cert, key, ca)?;
        let backend_listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        tracing::info!(backend_listen = %backend_listener.local_addr()?, "serving backend feeds over mutual TLS");
        tokio::spawn(listener::serve(
            backend_listener,
            app.clone(),
            limits,
            Some(tls),
            std::future::pending(),
        ));
    }

    let interval = backend.config.dataprep_interval;
    tokio::spawn(every(
        interval,
        backend.clone(),
        move |backend| async move {
            // A backlog drains run after run within half an interval; the next goes on.
            let budget = std::time::Duration::from_secs(interval / 2);
            if let Err(e) = backend.drain_dataprep(budget).await {
                tracing::error!(error = %e, "scheduled data-prep failed");
            }
        },
    ));
    if backend.peering.as_ref().is_some_and(|p| p.has_registry()) {
        tokio::spawn(every(
            args.registry_refresh,
            backend.clone(),
            |backend| async move {
                backend.refresh_registry().await;
            },
        ));
    }
    if backend.pulls_peers() {
        tokio::spawn(every(
            args.consumer_interval,
            backend.clone(),
            |backend| async move {
                backend.run_consumer(Poll::WhenDue).await;
            },
        ));
    }
    listener::serve(listener, app, limits, None, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// Runs `job` now and then every `seconds`.
async fn every<F, Fut>(seconds: u64, backend: Arc<Backend>, job: F)
where
    F: Fn(Arc<Backend>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(Duration::from_secs(seconds.max(1)));
    loop {
        ticks.tick().await;
        job(backend.clone()).await;
    }
}
