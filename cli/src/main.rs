//! `enfeed`: one region's Exposure Notification backend on embedded storage, and the tools
//! around it. `enfeed --help` lists the commands.

mod admin;
mod inspect;
mod logging;
mod registry;
mod serve;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use enfeed::adapters::local::FileIssuers;
use enfeed::adapters::tls::HttpsFetch;
use enfeed::domain::peers::PeersFile;
use enfeed::ports::SystemClock;
use enfeed::{Backend, Config};

#[derive(Parser)]
#[command(
    name = "enfeed",
    version,
    about = "Interoperable Exposure Notification key feeds"
)]
struct Cli {
    /// Log lines as JSON (`json`), as text for people (`text`), or JSON unless the log goes to
    /// a terminal (`auto`). The level comes from ENFEED_LOG (default `info`).
    #[arg(long, global = true, env = "ENFEED_LOG_FORMAT", default_value = "auto")]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// Where a region keeps its data, and its settings.
#[derive(clap::Args)]
struct Region {
    /// Data directory: embedded database, published feeds, signing keys.
    #[arg(long, env = "ENFEED_DATA", default_value = "enfeed-data")]
    data: PathBuf,

    /// Peers file (TOML): the peer backends to pull keys from, and who may pull ours.
    #[arg(long, env = "ENFEED_PEERS")]
    peers: Option<PathBuf>,

    /// Trusted issuers file (TOML): health authorities whose verification certificates
    /// authorise uploads, besides this region's one-time codes.
    #[arg(long, env = "ENFEED_ISSUERS")]
    issuers: Option<PathBuf>,

    #[command(flatten)]
    registry: registry::RegistrySource,

    #[command(flatten)]
    config: Config,
}

impl Region {
    /// The peers file, or no peers.
    fn peers(&self) -> anyhow::Result<PeersFile> {
        match &self.peers {
            Some(path) => Ok(PeersFile::load(path)?),
            None => Ok(PeersFile::default()),
        }
    }

    /// The region's backend, pulling from the peers of its peers file and of its registry,
    /// trusting the issuers of its issuers file (read again every `--issuers-refresh` seconds).
    async fn open(self) -> anyhow::Result<Backend> {
        let peering = self
            .registry
            .peering(self.peers()?, &self.data, self.config.region)?;
        let mut backend = enfeed::entry::local::open_federated_backend(
            self.config,
            &self.data,
            Arc::new(SystemClock),
            peering,
        )
        .with_context(|| format!("opening the region in {}", self.data.display()))?;
        if let Some(path) = self.issuers {
            let key_sets = HttpsFetch::new(None, None)?;
            backend
                .follow_issuers(Arc::new(FileIssuers(path)), Arc::new(key_sets))
                .await?;
        }
        Ok(backend)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve a region: uploads, admin, feeds, and data-prep on a schedule.
    Serve(serve::ServeArgs),
    /// Run data-prep once: publish new chunks, retire expired ones.
    Dataprep(admin::AdminTarget),
    /// Pull the feeds of every peer in --peers once.
    Consume(admin::AdminTarget),
    /// One-time verification codes for uploads.
    Codes {
        #[command(subcommand)]
        command: CodesCommand,
    },
    /// The health authority's staff who issue codes (with the console or the API), each with a
    /// token of their own: an issuer may issue codes and see their own, nothing else.
    CodeIssuers {
        #[command(subcommand)]
        command: CodeIssuersCommand,
    },
    /// Write the console as static files for the serverless mode (docs/deploy.md): its pages,
    /// script and style, calling the API at --api-url with the token kept in the page.
    ConsoleDist {
        /// The API's origin, e.g. https://a1b2c3d4e5.execute-api.eu-central-2.amazonaws.com
        /// (the stack's ConsoleApiUrl output).
        #[arg(long, env = "ENFEED_CONSOLE_API_URL")]
        api_url: String,
        /// The folder to write them to (created if missing; its files are overwritten).
        #[arg(long, default_value = "console-dist")]
        out: PathBuf,
    },
    /// Signing keys of the region.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Read and verify a GAEN export file, and print its header and keys.
    Inspect(inspect::InspectArgs),
    /// The trust registry's tools, for its key holders: create, delegate, sign an entry,
    /// revoke, publish.
    Registry {
        #[command(subcommand)]
        command: registry::RegistryCommand,
    },
}

#[derive(Subcommand)]
enum CodesCommand {
    /// Issue a new single-use code for a person who tested positive.
    Issue(admin::IssueArgs),
}

#[derive(Subcommand)]
enum CodeIssuersCommand {
    /// Add a code issuer and print their token (shown this once; only its hash is kept).
    Add {
        /// The issuer's name: letters, digits, spaces, dots, dashes, underscores.
        name: String,
        #[command(flatten)]
        target: admin::AdminTarget,
    },
    /// List the code issuers, revoked ones included.
    List(admin::AdminTarget),
    /// Revoke a code issuer's token: it is refused from then on, and their console sessions end.
    Revoke {
        name: String,
        #[command(flatten)]
        target: admin::AdminTarget,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key; chunks are then signed by every key, newest first.
    Rotate {
        /// Data directory of the region.
        #[arg(long, env = "ENFEED_DATA", default_value = "enfeed-data")]
        data: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let recent_errors = logging::init(cli.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args, recent_errors).await,
            Command::Dataprep(target) => admin::run(target, admin::Action::Dataprep).await,
            Command::Consume(target) => admin::run(target, admin::Action::Consume).await,
            Command::Codes {
                command: CodesCommand::Issue(args),
            } => {
                let request = args.request();
                admin::run(args.target, admin::Action::IssueCode(request)).await
            }
            Command::CodeIssuers { command } => match command {
                CodeIssuersCommand::Add { name, target } => {
                    admin::run(target, admin::Action::AddIssuer(name)).await
                }
                CodeIssuersCommand::List(target) => {
                    admin::run(target, admin::Action::ListIssuers).await
                }
                CodeIssuersCommand::Revoke { name, target } => {
                    admin::run(target, admin::Action::RevokeIssuer(name)).await
                }
            },
            Command::Keys {
                command: KeysCommand::Rotate { data },
            } => {
                let version = enfeed::adapters::local::signing_keys::rotate(
                    &data.join(enfeed::adapters::local::SIGNING_KEYS),
                )?;
                println!("added signing key {version}");
                Ok(())
            }
            Command::ConsoleDist { api_url, out } => {
                for (name, content) in enfeed::entry::console::static_files(&api_url)? {
                    let path = out.join(name);
                    if let Some(folder) = path.parent() {
                        std::fs::create_dir_all(folder)
                            .with_context(|| format!("creating {}", folder.display()))?;
                    }
                    std::fs::write(&path, content)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                println!("the console for {api_url} is in {}", out.display());
                Ok(())
            }
            Command::Inspect(args) => inspect::run(args),
            Command::Registry { command } => registry::run(command).await,
        }
    })
}
