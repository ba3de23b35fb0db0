//! `enfeed serve`: the HTTP API on a TCP listener, with data-prep on a schedule.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use enfeed::Backend;
use enfeed::api::{self, AccessPolicy};

use crate::Region;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    region: Region,

    /// Address for the HTTP API (uploads, feeds, admin).
    #[arg(long, env = "ENFEED_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Bearer token of the admin routes. Without it, one is generated on first start and kept
    /// in `<data>/admin-token`.
    #[arg(long, env = "ENFEED_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let token_file = args.region.data.join("admin-token");
    let admin_token = match args.admin_token {
        Some(token) => token,
        None => stored_admin_token(&token_file)?,
    };
    let backend = Arc::new(args.region.open()?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(region = %backend.config.region, listen = %listener.local_addr()?, "serving");
    if token_file.exists() {
        tracing::info!(
            "admin routes take the bearer token in {}",
            token_file.display()
        );
    }
    tokio::spawn(dataprep_schedule(backend.clone()));
    let app = api::router(
        backend,
        AccessPolicy {
            admin_token,
            ..AccessPolicy::default()
        },
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// Runs data-prep now and then every configured interval; a failed run is logged and retried
/// at the next tick.
async fn dataprep_schedule(backend: Arc<Backend>) {
    let mut ticks =
        tokio::time::interval(Duration::from_secs(backend.config.dataprep_interval.max(1)));
    loop {
        ticks.tick().await;
        if let Err(e) = backend.run_dataprep().await {
            tracing::error!(error = %e, "scheduled data-prep failed");
        }
    }
}

/// The admin token kept in the data directory, generated on first use.
fn stored_admin_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        return Ok(token.trim().to_string());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let token = enfeed::authorize::random_token();
    std::fs::write(path, &token).with_context(|| format!("writing {}", path.display()))?;
    Ok(token)
}
