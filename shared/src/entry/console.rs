//! The console: web pages for the health authority's staff who issue codes and for the
//! region's operator, served by the HTTP API under `/console/`, or written as static files to
//! put beside the CDN (see docs/console.md). This module owns what the pages are made of (one
//! layout around each page's content, CSS and one script, compiled into the binary: nothing is
//! fetched at run time), the headers they are served with, and the sign-in sessions; the
//! routes are the API's.
//!
//! A session is opened by signing in with a token (the admin token: the operator; a code
//! issuer's token: that issuer) and lives in this process's memory, named by an `HttpOnly;
//! Secure; SameSite=Strict` cookie. Every state-changing request of a session must carry the
//! session's CSRF token in [`CSRF_HEADER`]; pages read it from `GET /console/session`.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::domain::secret::{random_token, same_secret};
use crate::ports::UnixSeconds;

/// Who signed in, or whose bearer token an admin route was called with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The region's operator (the admin token).
    Operator,
    /// A code issuer, by name.
    Issuer(String),
}

impl Caller {
    /// `operator` or `issuer`.
    pub fn role(&self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Issuer(_) => "issuer",
        }
    }

    /// The page a caller starts on.
    pub fn home(&self) -> &'static str {
        match self {
            Self::Operator => "/console/status",
            Self::Issuer(_) => "/console/issuer",
        }
    }
}

/// The cookie that names a session.
pub const SESSION_COOKIE: &str = "enfeed_session";
/// The header a session's state-changing requests carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts, from sign-in.
pub const SESSION_SECONDS: u64 = 8 * 3600;
/// Most sessions open at once; past it, the oldest is closed.
const MAX_SESSIONS: usize = 10_000;

/// An open session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub caller: Caller,
    pub csrf: String,
    pub expires_at: UnixSeconds,
}

/// The open sessions of this process.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// Opens a session for `caller` at `now`.
    pub fn open(&self, caller: Caller, now: UnixSeconds) -> Session {
        let session = Session {
            id: format!("{}{}", random_token(), random_token()),
            caller,
            csrf: random_token(),
            expires_at: now + SESSION_SECONDS,
        };
        let mut sessions = self.0.lock().expect("no panic while signing in");
        sessions.retain(|_, s| s.expires_at > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .values()
                .min_by_key(|s| s.expires_at)
                .map(|s| s.id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(session.id.clone(), session.clone());
        session
    }

    /// The unexpired session that a request's cookie names.
    pub fn of_request(&self, headers: &HeaderMap, now: UnixSeconds) -> Option<Session> {
        let id = session_id(headers)?;
        let sessions = self.0.lock().expect("no panic while signing in");
        sessions
            .get(id)
            .filter(|session| session.expires_at > now)
            .cloned()
    }

    /// Closes the session `id`.
    pub fn close(&self, id: &str) {
        self.0.lock().expect("no panic while signing in").remove(id);
    }

    /// Closes every session of the code issuer `name`.
    pub fn close_issuer(&self, name: &str) {
        let mut sessions = self.0.lock().expect("no panic while signing in");
        sessions.retain(|_, s| s.caller != Caller::Issuer(name.to_string()));
    }
}

impl Session {
    /// Whether a request carries this session's CSRF token.
    pub fn csrf_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|token| same_secret(token, &self.csrf))
    }

    /// The `Set-Cookie` value that hands the session to the browser.
    pub fn cookie(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={}; Path=/; Max-Age={SESSION_SECONDS}; HttpOnly; Secure; \
             SameSite=Strict",
            self.id
        ))
        .expect("a session ID is a header value")
    }
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "enfeed_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
    )
}

/// The session ID in a request's cookies.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty())
}

/// Whether a request that a browser may have sent comes from the console's own pages: no
/// `Origin`, or one whose host is the request's `Host`. (With `SameSite=Strict` cookies and the
/// CSRF token, a second line of defence.)
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    host.is_some() && origin_host == host
}

/// A console page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Login,
    Issuer,
    Status,
    Peers,
    Issuers,
    Forbidden,
}

/// The operator's pages, in the order of their navigation, with their links' text.
const OPERATOR_PAGES: [(Page, &str); 3] = [
    (Page::Status, "Status"),
    (Page::Peers, "Peers"),
    (Page::Issuers, "Code issuers"),
];

/// How the pages are delivered, which decides their links and how they reach the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// By `enfeed serve` under `/console/`, signed in with a session cookie.
    Served,
    /// As static files beside the CDN, calling the API at this origin with the bearer token
    /// kept in the page (see docs/deploy.md).
    Static { api: String },
}

impl Delivery {
    /// Where the page `name` is.
    fn link(&self, name: &str) -> String {
        match self {
            Self::Served => format!("/console/{name}"),
            Self::Static { .. } => format!("{name}.html"),
        }
    }

    fn assets(&self) -> &'static str {
        match self {
            Self::Served => "/console/assets/",
            Self::Static { .. } => "assets/",
        }
    }
}

impl Page {
    /// Every page.
    pub const ALL: [Self; 6] = [
        Self::Login,
        Self::Issuer,
        Self::Status,
        Self::Peers,
        Self::Issuers,
        Self::Forbidden,
    ];

    /// The page at `/console/{name}`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|page| *page != Self::Forbidden && page.name() == name)
    }

    /// The page's name: its path below `/console/`, its file's name, its `data-page`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Issuer => "issuer",
            Self::Status => "status",
            Self::Peers => "peers",
            Self::Issuers => "issuers",
            Self::Forbidden => "forbidden",
        }
    }

    /// Who may open the page; `None`: anyone.
    pub fn role(self) -> Option<&'static str> {
        match self {
            Self::Login | Self::Forbidden => None,
            Self::Issuer => Some("issuer"),
            Self::Status | Self::Peers | Self::Issuers => Some("operator"),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Login => "Sign in",
            Self::Issuer => "Issue a code",
            Self::Status => "Region status",
            Self::Peers => "Peers",
            Self::Issuers => "Code issuers",
            Self::Forbidden => "Not for your role",
        }
    }

    /// What the page holds inside the layout's `<main>`.
    fn content(self) -> &'static str {
        match self {
            Self::Login => include_str!("console/login.html"),
            Self::Issuer => include_str!("console/issuer.html"),
            Self::Status => include_str!("console/status.html"),
            Self::Peers => include_str!("console/peers.html"),
            Self::Issuers => include_str!("console/issuers.html"),
            Self::Forbidden => include_str!("console/forbidden.html"),
        }
    }

    /// The operator's navigation, with this page marked as the current one.
    fn nav(self, delivery: &Delivery) -> String {
        let items: String = OPERATOR_PAGES
            .iter()
            .map(|(page, text)| {
                let current = if *page == self {
                    r#" aria-current="page""#
                } else {
                    ""
                };
                format!(
                    r#"<li><a href="{}"{current}>{text}</a></li>"#,
                    delivery.link(page.name())
                )
            })
            .collect();
        format!("<nav aria-label=\"Operator pages\"><ul>{items}</ul></nav>\n")
    }

    /// The whole page: the one layout (head, skip link, the signed-in pages' header and the
    /// operator's navigation) around the page's content, with links for `delivery`.
    pub fn html(self, delivery: &Delivery) -> String {
        let header = match self.role() {
            None => String::new(),
            Some(role) => {
                let nav = match role {
                    "operator" => self.nav(delivery),
                    _ => String::new(),
                };
                include_str!("console/header.html").replace("{{nav}}", &nav)
            }
        };
        let meta = match delivery {
            Delivery::Served => String::new(),
            Delivery::Static { api } => format!(
                "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
                 <meta name=\"enfeed-api\" content=\"{api}\">\n",
                static_policy(api)
            ),
        };
        let class = match self.role() {
            None => r#" class="narrow""#,
            Some(_) => "",
        };
        let home = match delivery {
            Delivery::Served => "/console/".to_string(),
            Delivery::Static { .. } => delivery.link(Self::Login.name()),
        };
        include_str!("console/layout.html")
            .replace("{{meta}}", &meta)
            .replace("{{title}}", self.title())
            .replace("{{assets}}", delivery.assets())
            .replace("{{page}}", self.name())
            .replace("{{header}}", &header)
            .replace("{{class}}", class)
            .replace("{{content}}", &self.content().replace("{{home}}", &home))
    }
}

/// An origin that is not `http(s)://host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not an origin: it is https://host or https://host:port, with no path (http:// \
     for a test on this machine)"
)]
pub struct BadOrigin(pub String);

/// `text` as an origin (`https://host[:port]`; a trailing `/` is dropped).
pub fn origin(text: &str) -> Result<String, BadOrigin> {
    let origin = text.strip_suffix('/').unwrap_or(text);
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let valid = host.is_some_and(|host| {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    });
    match valid {
        true => Ok(origin.to_string()),
        false => Err(BadOrigin(text.to_string())),
    }
}

/// The pages of the static console: the code issuer's. (The operator's pages need the
/// operator's token, which the serverless mode has none of: its operator manages code issuers
/// through IAM.)
const STATIC_PAGES: [Page; 2] = [Page::Login, Page::Issuer];

/// The console as static files (path below the console's folder, content), calling the API at
/// `api_url`: the sign-in and code issuer's pages, the script, the style and the icon.
pub fn static_files(api_url: &str) -> Result<Vec<(String, String)>, BadOrigin> {
    let delivery = Delivery::Static {
        api: origin(api_url)?,
    };
    let mut files: Vec<(String, String)> = STATIC_PAGES
        .into_iter()
        .map(|page| (format!("{}.html", page.name()), page.html(&delivery)))
        .collect();
    for name in ASSETS {
        let (_, content) = asset(name).expect("every listed asset exists");
        files.push((format!("assets/{name}"), content.to_string()));
    }
    Ok(files)
}

/// The files the pages load from `assets/`.
const ASSETS: [&str; 3] = ["console.css", "console.js", "icon.svg"];

/// A file the pages load from `/console/assets/{name}`: its content type and content.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "console.css" => Some((
            "text/css; charset=utf-8",
            include_str!("console/console.css"),
        )),
        "console.js" => Some((
            "text/javascript; charset=utf-8",
            include_str!("console/console.js"),
        )),
        "icon.svg" => Some(("image/svg+xml", include_str!("console/icon.svg"))),
        _ => None,
    }
}

/// The policy the static pages carry in a `<meta>` element: [`CONTENT_SECURITY_POLICY`],
/// with the API's origin as the only one to connect to, and without `frame-ancestors`, which
/// only a header can set (the CDN's response headers policy sends it, and `X-Frame-Options`).
pub fn static_policy(api: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src {api}; form-action 'self'; base-uri 'none'"
    )
}

/// The Content-Security-Policy of every console answer: its own script and style only, no
/// inline code, no frames, no other origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Adds the console's security headers to an answer: the CSP, no framing, no sniffing, no
/// referrer, no caching.
pub async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn sessions_are_found_by_cookie_until_they_expire_or_close() {
        let sessions = Sessions::default();
        let issuer = sessions.open(Caller::Issuer("ward 3".into()), 1000);
        let operator = sessions.open(Caller::Operator, 1000);
        let cookie = format!("other=1; {SESSION_COOKIE}={}", issuer.id);
        let request = with(&[(header::COOKIE, &cookie)]);
        let found = sessions.of_request(&request, 1001).unwrap();
        assert_eq!(found.caller, Caller::Issuer("ward 3".into()));
        assert!(
            sessions
                .of_request(&request, 1000 + SESSION_SECONDS)
                .is_none()
        );
        assert!(!found.csrf_matches(&request));
        assert!(found.csrf_matches(&with(&[
            (header::COOKIE, &cookie),
            (CSRF_HEADER.parse().unwrap(), &issuer.csrf)
        ])));
        sessions.close_issuer("ward 3");
        assert!(sessions.of_request(&request, 1001).is_none());
        let cookie = format!("{SESSION_COOKIE}={}", operator.id);
        let request = with(&[(header::COOKIE, &cookie)]);
        assert!(sessions.of_request(&request, 1001).is_some());
        sessions.close(&operator.id);
        assert!(sessions.of_request(&request, 1001).is_none());
        assert!(session_id(&with(&[(header::COOKIE, "enfeed_session=")])).is_none());
    }

    #[test]
    fn only_requests_from_the_same_origin_pass() {
        assert!(same_origin(&with(&[(header::HOST, "127.0.0.1:8080")])));
        assert!(same_origin(&with(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&with(&[
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "https://evil.example")
        ])));
        assert!(!same_origin(&with(&[(header::ORIGIN, "http://a")])));
    }

    #[test]
    fn every_page_loads_only_its_own_assets_in_both_deliveries() {
        let api = "https://a1b2c3d4e5.execute-api.eu-central-2.amazonaws.com";
        for page in Page::ALL {
            let html = page.html(&Delivery::Served);
            assert!(!html.contains("<script>"), "{page:?} has inline script");
            assert!(!html.contains("style="), "{page:?} has inline style");
            assert!(!html.contains("http"), "{page:?} loads another origin");
            assert!(!html.contains("{{"), "{page:?} has a placeholder left");
            for asset_path in html.split("\"/console/assets/").skip(1) {
                let name = asset_path.split('"').next().unwrap();
                assert!(asset(name).is_some(), "{page:?} loads a missing {name}");
            }
            assert!(html.contains(r#"<html lang="en">"#));
            assert_eq!(html.contains("Sign out"), page.role().is_some(), "{page:?}");
            assert_eq!(
                html.contains("Operator pages"),
                page.role() == Some("operator")
            );
        }
        let status = Page::Status.html(&Delivery::Served);
        assert!(status.contains(r#"<a href="/console/status" aria-current="page">"#));
        assert!(status.contains(r#"<a href="/console/peers">"#));

        let files = static_files(&format!("{api}/")).unwrap();
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "login.html",
                "issuer.html",
                "assets/console.css",
                "assets/console.js",
                "assets/icon.svg"
            ]
        );
        let issuer = &files[1].1;
        assert!(issuer.contains(r#"<script src="assets/console.js" defer>"#));
        assert!(issuer.contains(&format!(r#"<meta name="enfeed-api" content="{api}">"#)));
        assert!(issuer.contains(&format!("connect-src {api};")));
        assert!(!issuer.contains("/console/") && !issuer.contains("frame-ancestors"));
        let peers = Page::Peers.html(&Delivery::Static { api: api.into() });
        assert!(peers.contains(r#"<a href="peers.html" aria-current="page">"#));
        assert!(asset("console.js").is_some() && asset("../x").is_none());
    }

    #[test]
    fn origins_are_a_scheme_and_a_host() {
        assert_eq!(origin("https://x.example/").unwrap(), "https://x.example");
        assert_eq!(
            origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "x.example",
            "https://",
            "https://x.example/v1",
            "https://a b",
            "ftp://x",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}
