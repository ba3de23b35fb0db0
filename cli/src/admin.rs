//! The operator's commands (`codes issue`, `code-issuers add|list|revoke`, `dataprep`,
//! `consume`). Each works either on the
//! region's data directory or, with `--server`, through the admin API of a running
//! `enfeed serve`, which holds the data directory while it runs.

use anyhow::Context as _;
use enfeed::Backend;
use enfeed::domain::diagnosis::CodeRequest;
use enfeed::services::consumer::Poll;
use serde_json::Value;

use crate::Region;

/// Where an operator's command goes.
#[derive(clap::Args)]
pub struct AdminTarget {
    #[command(flatten)]
    region: Region,

    /// Base URL of a running `enfeed serve` to ask, instead of opening the data directory.
    #[arg(long, env = "ENFEED_SERVER")]
    server: Option<String>,

    /// Admin token for --server; by default the one in `<data>/admin-token`.
    #[arg(long, env = "ENFEED_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// What a code is issued with: the health authority's diagnosis, if it gives one.
#[derive(clap::Args)]
pub struct IssueArgs {
    #[command(flatten)]
    pub target: AdminTarget,

    /// The test's type: confirmed, likely or negative; the upload's keys get it as their
    /// report type, whatever the phone says.
    #[arg(long)]
    pub test_type: Option<String>,

    /// The day symptoms began (YYYY-MM-DD, UTC), at most 14 days ago.
    #[arg(long)]
    pub symptom_date: Option<String>,
}

impl IssueArgs {
    pub fn request(&self) -> CodeRequest {
        CodeRequest {
            test_type: self.test_type.clone(),
            symptom_date: self.symptom_date.clone(),
        }
    }
}

/// An operator's command.
pub enum Action {
    IssueCode(CodeRequest),
    Dataprep,
    Consume,
    AddIssuer(String),
    ListIssuers,
    RevokeIssuer(String),
}

impl Action {
    fn route(&self) -> String {
        match self {
            Action::IssueCode(_) => "v1/admin/codes".into(),
            Action::Dataprep => "v1/admin/run/dataprep".into(),
            Action::Consume => "v1/admin/run/consumer".into(),
            Action::AddIssuer(_) | Action::ListIssuers => "v1/admin/issuers".into(),
            Action::RevokeIssuer(name) => format!("v1/admin/issuers/{name}/revoke"),
        }
    }

    /// The request's JSON body, if it has one.
    fn body(&self) -> Option<Value> {
        match self {
            Action::IssueCode(request) => Some(serde_json::to_value(request).ok()?),
            Action::AddIssuer(name) => Some(serde_json::json!({ "name": name })),
            _ => None,
        }
    }

    async fn on(self, backend: Backend) -> anyhow::Result<Value> {
        let now = backend.clock.now();
        let issuers = || {
            backend
                .code_issuers
                .clone()
                .context("this region keeps no code issuers")
        };
        Ok(match self {
            Action::IssueCode(request) => {
                let diagnosis = request.diagnosis(now)?;
                serde_json::to_value(backend.issue_code(diagnosis).await?)?
            }
            Action::Dataprep => serde_json::to_value(backend.run_dataprep().await?)?,
            Action::Consume => {
                let registry = backend.refresh_registry().await;
                let consumer = backend.run_consumer(Poll::Now).await;
                let mut answer = serde_json::to_value(consumer)?;
                if backend.peering.as_ref().is_some_and(|p| p.has_registry()) {
                    answer["registry"] = serde_json::to_value(registry)?;
                }
                answer
            }
            Action::AddIssuer(name) => serde_json::to_value(issuers()?.add(&name, now).await?)?,
            Action::ListIssuers => {
                serde_json::json!({ "issuers": issuers()?.list().await? })
            }
            Action::RevokeIssuer(name) => {
                issuers()?.revoke(&name, now).await?;
                serde_json::json!({ "revoked": name })
            }
        })
    }
}

/// Runs `action` and prints its JSON answer.
pub async fn run(target: AdminTarget, action: Action) -> anyhow::Result<()> {
    let answer = match &target.server {
        Some(server) => {
            let token = match target.admin_token {
                Some(token) => token,
                None => {
                    let path = target.region.data.join("admin-token");
                    std::fs::read_to_string(&path)
                        .with_context(|| {
                            format!("no --admin-token, and cannot read {}", path.display())
                        })?
                        .trim()
                        .to_string()
                }
            };
            let url = format!("{}/{}", server.trim_end_matches('/'), action.route());
            let client = reqwest::Client::new();
            let mut request = match action {
                Action::ListIssuers => client.get(&url),
                _ => client.post(&url),
            }
            .bearer_auth(token);
            if let Some(body) = action.body() {
                request = request.json(&body);
            }
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response
                .json()
                .await
                .with_context(|| format!("{url} answered no JSON"))?;
            anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
            body
        }
        None => {
            if matches!(action, Action::Consume) {
                anyhow::ensure!(
                    target.region.peers.is_some() || target.region.registry.is_set(),
                    "no peers to pull from: give --peers FILE or --registry URL"
                );
            }
            let data = target.region.data.clone();
            let backend = target.region.open().await.with_context(|| {
                format!(
                    "if `enfeed serve` is running on {}, ask it with --server URL",
                    data.display()
                )
            })?;
            action.on(backend).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
