//! The Lambda functions' shared part (cargo feature `aws`): each function's settings from its
//! environment, its backend wired on the AWS adapters, JSON logs for CloudWatch, and the
//! [`handlers`] the functions' `main`s hand their events to. `docs/deploy.md` lists the
//! settings.

pub mod handlers;

use std::path::PathBuf;
use std::sync::Arc;

use aws_config::SdkConfig;
use serde::Deserialize;

use crate::adapters::aws::{
    DynamoConsumerState, DynamoStore, NoSigningKeys, ParameterError, S3BlobStore, SigningKeysError,
    issuer_source, load_parameter, load_signer, s3_client, sdk_config,
};
use crate::adapters::tls::TlsError;
use crate::adapters::tls::client::HttpsFetch;
use crate::domain::config::Config;
use crate::domain::key::RegionId;
use crate::domain::peers::{PeersError, PeersFile};
use crate::domain::secret::{Pepper, PepperError};
use crate::entry::backend::Backend;
use crate::entry::peers::{Peering, ProducerError};
use crate::ports::{Clock, Signer, SystemClock};
use crate::services::certificates::IssuersError;
use crate::services::code_issuers::CodeIssuers;

/// The serverless settings, besides the core's [`Config`]: environment variables named, as the
/// core's, `ENFEED_` and the field's name in capitals.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    /// The DynamoDB table of keys, codes and publication state.
    pub table: String,

    /// The S3 bucket that holds the published chunks and indexes.
    pub bucket: String,

    /// SSM parameter path of the signing keys (`<path>/v1`, `<path>/v2`, ...: SecureString
    /// PKCS#8 P-256 PEMs). Functions that never sign run without it.
    pub signing_keys_path: Option<String>,

    /// SSM SecureString parameter holding the pepper of one-time code hashes (64 hexadecimal
    /// digits; the functions that issue or check codes only).
    pub code_pepper_parameter: Option<String>,

    /// SSM SecureString parameter holding this backend's TLS client key (PEM) towards its
    /// peers, in place of the peers file's `client_key` (consumer function only).
    pub client_key_parameter: Option<String>,

    /// The consumer's state table (consumer function only).
    pub consumer_table: Option<String>,

    /// Regions whose backends may read the all-to-all feed (comma-separated; feed gateway).
    #[serde(default)]
    pub a2a_consumers: Vec<RegionId>,

    /// The peers file (TOML, see [`crate::domain::peers`]) of the producers the consumer pulls
    /// (consumer function, with [`Settings::consumer_table`]); its `a2a_consumers` add to
    /// `ENFEED_A2A_CONSUMERS`.
    pub peers_file: Option<PathBuf>,

    /// Where the trusted issuers file is: `ssm:<parameter name>` or `s3://<bucket>/<key>`
    /// (the functions that take uploads); read again every `ENFEED_ISSUERS_REFRESH` seconds.
    pub issuers: Option<String>,

    /// The token a CDN in front of this HTTP function adds to every request (header
    /// `X-Enfeed-Origin-Token`). When set, requests without it are refused, and clients are
    /// counted by the viewer address the CDN reports (`CloudFront-Viewer-Address`).
    pub cdn_origin_token: Option<String>,

    /// Origins of the console's static pages (comma-separated, e.g.
    /// `https://d111111abcdef8.cloudfront.net`) that may call the codes function's routes from
    /// the browser (CORS; codes function).
    #[serde(default)]
    pub console_origins: Vec<String>,

    /// Address S3 by path (`endpoint/bucket/key`) instead of virtual host: for S3-compatible
    /// endpoints other than AWS.
    #[serde(default)]
    pub s3_path_style: bool,

    /// Base URL of the trust registry (consumer function, with [`Settings::registry_root`]):
    /// the producers to pull come from it besides the peers file, refreshed at every run.
    pub registry: Option<String>,

    /// The registry's `root.json` inside the function (e.g. in the peers layer).
    pub registry_root: Option<PathBuf>,

    /// PEM CA certificates for an https:// registry.
    pub registry_ca: Option<PathBuf>,

    /// Where the registry's trusted metadata is kept between runs of a warm function.
    #[serde(default = "default_registry_datastore")]
    pub registry_datastore: PathBuf,
}

fn default_registry_datastore() -> PathBuf {
    PathBuf::from("/tmp/enfeed-registry")
}

/// Everything a function reads from its environment.
#[derive(Clone, Debug)]
pub struct FunctionEnv {
    pub config: Config,
    pub settings: Settings,
}

/// The prefix of every setting's environment variable.
const ENV_PREFIX: &str = "ENFEED_";

impl FunctionEnv {
    /// Reads the environment (no command line: Lambda passes none).
    pub fn from_env() -> Result<Self, AwsError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the settings from `(name, value)` pairs, as [`FunctionEnv::from_env`] does from the
    /// environment.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, AwsError> {
        let settings_error = |e: envy::Error| {
            let problem = match e {
                envy::Error::MissingValue(field) => {
                    format!("{ENV_PREFIX}{} is not set", field.to_uppercase())
                }
                envy::Error::Custom(message) => message,
            };
            AwsError::Settings(format!(
                "{problem} (every setting is an environment variable: ENFEED_REGION, \
                 ENFEED_TABLE, ENFEED_BUCKET, ...; see docs/deploy.md)"
            ))
        };
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let env = envy::prefixed(ENV_PREFIX);
        Ok(Self {
            config: env.from_iter(vars.clone()).map_err(settings_error)?,
            settings: env.from_iter(vars).map_err(settings_error)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("bad settings in the environment: {0}")]
    Settings(String),
    #[error(transparent)]
    SigningKeys(#[from] SigningKeysError),
    #[error(transparent)]
    Parameter(#[from] ParameterError),
    #[error("{0}: {1}")]
    Pepper(String, PepperError),
    #[error(transparent)]
    Peers(#[from] PeersError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error(transparent)]
    Issuers(#[from] IssuersError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the trust registry: {0}")]
    Registry(String),
    #[error("ENFEED_CONSOLE_ORIGINS: {0}")]
    ConsoleOrigin(#[from] crate::entry::console::BadOrigin),
}

/// A backend on DynamoDB and S3, signing with the keys under the configured SSM path (or
/// with none, for functions that do not sign), pulling the peers of the peers file with its
/// place kept in the consumer table (when both are configured). The trust registry is the
/// consumer function's alone: [`consumer_backend`].
pub async fn backend(
    config: Config,
    settings: &Settings,
    sdk: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> Result<Backend, AwsError> {
    backend_with(config, settings, sdk, clock, |_, peers, client_key, _| {
        Ok(Peering::local(peers, client_key)?)
    })
    .await
}

/// The consumer function's backend: [`backend`], with the producers of the trust registry
/// too when `ENFEED_REGISTRY` is set. Only this function refers to the registry's code, so the
/// other functions' binaries leave it (tough, aws-lc-rs) out even where the core is built with
/// the feature for all.
#[cfg(feature = "registry")]
pub async fn consumer_backend(
    config: Config,
    settings: &Settings,
    sdk: &SdkConfig,
    clock: Arc<dyn Clock>,
) -> Result<Backend, AwsError> {
    backend_with(config, settings, sdk, clock, registry_peering).await
}

/// How the consumer's peering is made from its settings, peers file and client key.
type PeeringOf = fn(&Settings, PeersFile, Option<String>, RegionId) -> Result<Peering, AwsError>;

async fn backend_with(
    config: Config,
    settings: &Settings,
    sdk: &SdkConfig,
    clock: Arc<dyn Clock>,
    peering: PeeringOf,
) -> Result<Backend, AwsError> {
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        &settings.table,
        config.retention(),
    ));
    let s3 = s3_client(sdk, settings.s3_path_style);
    let blobs = Arc::new(S3BlobStore::new(s3.clone(), &settings.bucket));
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let signer: Arc<dyn Signer> = match &settings.signing_keys_path {
        Some(path) => Arc::new(load_signer(&ssm, path, &config.signing_key_id()).await?),
        None => Arc::new(NoSigningKeys),
    };
    let pepper = match &settings.code_pepper_parameter {
        Some(name) => Some(
            Pepper::from_hex(&load_parameter(&ssm, name).await?)
                .map_err(|e| AwsError::Pepper(name.clone(), e))?,
        ),
        None => None,
    };
    let region = config.region;
    let code_issuers = pepper
        .clone()
        .map(|pepper| CodeIssuers::new(store.clone(), pepper));
    let mut backend = Backend::new(config, store, blobs, signer, pepper, clock);
    backend.code_issuers = code_issuers;
    if let Some(location) = &settings.issuers {
        let source = issuer_source(sdk, s3, location).map_err(IssuersError::from)?;
        backend
            .follow_issuers(source, Arc::new(HttpsFetch::new(None, None)?))
            .await?;
    }
    let Some(table) = &settings.consumer_table else {
        return Ok(backend);
    };
    let peers = match &settings.peers_file {
        Some(path) => PeersFile::load(path)?,
        None => PeersFile::default(),
    };
    let client_key = match &settings.client_key_parameter {
        Some(name) => Some(load_parameter(&ssm, name).await?),
        None => None,
    };
    let peering = peering(settings, peers, client_key, region)?;
    if peering.pulls() {
        let state = DynamoConsumerState::new(aws_sdk_dynamodb::Client::new(sdk), table);
        backend.pull_from(peering.local_producers()?, Arc::new(state));
        backend.peering = Some(Arc::new(peering));
    }
    Ok(backend)
}

/// The consumer's peering: the peers file, and the registry when one is configured.
#[cfg(feature = "registry")]
fn registry_peering(
    settings: &Settings,
    peers: PeersFile,
    client_key: Option<String>,
    region: RegionId,
) -> Result<Peering, AwsError> {
    use crate::adapters::tls::{HttpsFetch, PeerTls};
    let (Some(url), Some(root)) = (&settings.registry, &settings.registry_root) else {
        return Ok(Peering::local(peers, client_key)?);
    };
    let read = |path: &PathBuf| {
        std::fs::read(path)
            .map_err(|e| AwsError::Registry(format!("cannot read {}: {e}", path.display())))
    };
    let tls = PeerTls {
        server_ca_pem: settings.registry_ca.as_ref().map(read).transpose()?,
        insecure_http: url.starts_with("http://"),
        ..PeerTls::default()
    };
    let fetch = HttpsFetch::with(&tls).map_err(|e| AwsError::Registry(e.to_string()))?;
    let registry = crate::adapters::tuf::TufRegistry::new(
        url,
        read(root)?,
        settings.registry_datastore.clone(),
        Arc::new(fetch),
    )
    .map_err(|e| AwsError::Registry(e.to_string()))?;
    let federation = crate::services::federation::Federation::new(Arc::new(registry), region);
    Ok(Peering::with_registry(peers, client_key, federation)?)
}

/// The regions that may read the all-to-all feed: `ENFEED_A2A_CONSUMERS` and the peers
/// file's `a2a_consumers`.
pub fn a2a_consumers(settings: &Settings) -> Result<Vec<RegionId>, AwsError> {
    let mut regions = settings.a2a_consumers.clone();
    if let Some(path) = &settings.peers_file {
        regions.extend(PeersFile::load(path)?.a2a_consumers);
    }
    regions.sort();
    regions.dedup();
    Ok(regions)
}

/// A function's backend, all from its environment, on the system clock.
pub async fn backend_from_env() -> Result<(Backend, Settings), AwsError> {
    let env = FunctionEnv::from_env()?;
    let sdk = sdk_config().await;
    let backend = backend(env.config, &env.settings, &sdk, Arc::new(SystemClock)).await?;
    Ok((backend, env.settings))
}

/// Runs an HTTP function (ingest, the feed gateway) until the Lambda runtime stops it: its
/// backend from the environment, every request through [`handlers::HttpFunction`].
pub async fn run_http_function() -> Result<(), lambda_http::Error> {
    let (backend, settings) = backend_from_env().await?;
    let function = handlers::HttpFunction::new(
        Arc::new(backend),
        a2a_consumers(&settings)?,
        settings.cdn_origin_token,
    );
    lambda_http::run(lambda_http::service_fn(move |request| {
        let function = function.clone();
        async move { function.serve(request).await }
    }))
    .await
}

/// Runs the codes function until the Lambda runtime stops it: its backend from the
/// environment, every request through [`handlers::CodesFunction`].
pub async fn run_codes_function() -> Result<(), lambda_http::Error> {
    let (backend, settings) = backend_from_env().await?;
    let origins =
        crate::entry::api::console_origins(&settings.console_origins).map_err(AwsError::from)?;
    let function = handlers::CodesFunction::new(Arc::new(backend), origins);
    lambda_http::run(lambda_http::service_fn(move |request| {
        let function = function.clone();
        async move { function.serve(request).await }
    }))
    .await
}

/// The consumer function's backend ([`consumer_backend`]), all from its environment.
#[cfg(feature = "registry")]
pub async fn consumer_backend_from_env() -> Result<(Backend, Settings), AwsError> {
    let env = FunctionEnv::from_env()?;
    let sdk = sdk_config().await;
    let backend = consumer_backend(env.config, &env.settings, &sdk, Arc::new(SystemClock)).await?;
    Ok((backend, env.settings))
}

/// Logs as JSON lines, which CloudWatch Logs indexes; the filter comes from `ENFEED_LOG`
/// (default `info`).
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        .without_time() // CloudWatch stamps every line
        .finish()
        .with(log_filter(std::env::var("ENFEED_LOG").ok().as_deref()))
        .init();
}

/// The log filter of `ENFEED_LOG`: a level (`info`, `debug`), `target=level` pairs
/// (`enfeed=debug`), or both, comma-separated; `info` when it is unset, empty or not a filter.
/// A list of targets rather than the full `EnvFilter` grammar, whose regular expressions would
/// be most of a function's logging code.
fn log_filter(value: Option<&str>) -> tracing_subscriber::filter::Targets {
    value
        .filter(|value| !value.trim().is_empty())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::level_filters::LevelFilter::INFO)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn settings_come_from_enfeed_variables_with_the_documented_defaults() {
        let env = FunctionEnv::from_vars(vars(&[
            ("ENFEED_REGION", "CH"),
            ("ENFEED_TABLE", "keys"),
            ("ENFEED_BUCKET", "feeds"),
            ("ENFEED_A2A_CONSUMERS", "AT,DE"),
            ("ENFEED_RETENTION_DAYS", "14"),
            ("ENFEED_TRAVELER_REGIONS", "IT,AT"),
            ("ENFEED_ISSUERS", "ssm:/enfeed/CH/issuers"),
            ("OTHER", "x"),
        ]))
        .unwrap();
        assert_eq!(env.config.region.as_str(), "CH");
        assert_eq!(env.config.retention_days, 14);
        assert_eq!(
            env.config.dataprep_interval,
            crate::domain::config::DATAPREP_INTERVAL
        );
        assert_eq!(env.settings.a2a_consumers.len(), 2);
        assert_eq!(env.config.traveler_regions.len(), 2);
        assert_eq!(env.config.issuers_refresh, 300);
        assert_eq!(
            env.settings.issuers.as_deref(),
            Some("ssm:/enfeed/CH/issuers")
        );
        assert!(!env.settings.s3_path_style && env.settings.peers_file.is_none());
        assert!(env.settings.registry.is_none());
        assert_eq!(
            env.settings.registry_datastore,
            PathBuf::from("/tmp/enfeed-registry")
        );

        let missing = FunctionEnv::from_vars(vars(&[("ENFEED_REGION", "CH")])).unwrap_err();
        assert!(
            missing.to_string().contains("ENFEED_TABLE is not set"),
            "{missing}"
        );
        let bad = FunctionEnv::from_vars(vars(&[("ENFEED_REGION", "ch")])).unwrap_err();
        assert!(bad.to_string().contains("\"ch\""), "{bad}");
    }

    #[test]
    fn the_log_filter_takes_a_level_and_targets_and_falls_back_to_info() {
        use tracing::Level;
        let enables = |value: Option<&str>, target: &str, level: Level| {
            log_filter(value).would_enable(target, &level)
        };
        for unset in [None, Some(""), Some("  "), Some("enfeed=loud")] {
            assert!(enables(unset, "enfeed::services", Level::INFO), "{unset:?}");
            assert!(
                !enables(unset, "enfeed::services", Level::DEBUG),
                "{unset:?}"
            );
        }
        assert!(enables(Some("debug"), "aws_smithy_runtime", Level::DEBUG));
        assert!(!enables(Some("warn"), "enfeed", Level::INFO));
        // A target names a module and everything under it; other targets get the default
        // level, or nothing without one (as with `RUST_LOG`).
        let targets = Some("warn,enfeed=debug");
        assert!(enables(targets, "enfeed::adapters::aws", Level::DEBUG));
        assert!(!enables(targets, "enfeed", Level::TRACE));
        assert!(enables(targets, "hyper", Level::WARN));
        assert!(!enables(targets, "hyper", Level::INFO));
        assert!(!enables(Some("enfeed=debug"), "hyper", Level::ERROR));
    }
}
