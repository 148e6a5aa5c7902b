//! The CLI's HTTP client, for `submit`, `demo`, `bench` and the tests: `http://` and `https://`
//! (reqwest over rustls; the platform's root certificates, plus a CA given with `--ca-cert`).
//! HTTP/1.1, one pool of kept-alive connections per [`Client`]; a [`Connection`] is a client of
//! its own with one connection, for load tools.

use std::path::Path;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Why a request could not be made or its answer read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);

/// The longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A service's base URL, and the client that reaches it.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    options: ClientOptions,
    http: reqwest::Client,
}

/// How the client trusts a service's TLS certificate.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// A PEM file of CA certificates to trust besides the platform's (a private CA, or a test's
    /// self-signed certificate).
    pub ca_cert: Option<std::path::PathBuf>,
}

/// An answer.
#[derive(Debug)]
pub struct HttpResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl HttpResponse {
    /// The content type, or "".
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ClientError(format!(
                "the answer ({}) is not the JSON expected: {e}: {}",
                self.status,
                self.text().chars().take(300).collect::<String>()
            ))
        })
    }

    /// The problem, if this is an error answer.
    pub fn problem(&self) -> Option<Problem> {
        if self
            .content_type()
            .starts_with(crate::problem::PROBLEM_JSON)
        {
            serde_json::from_slice(&self.body).ok()
        } else {
            None
        }
    }

    /// The body as JSON if the status is a success; the problem's detail as the error otherwise.
    pub fn ok_json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        if self.status.is_success() {
            self.json()
        } else {
            Err(self.error())
        }
    }

    /// What went wrong, in words.
    pub fn error(&self) -> ClientError {
        match self.problem() {
            Some(p) => ClientError(format!("{} {}: {}", p.status, p.kind, p.detail)),
            None => ClientError(format!("{}: {}", self.status, self.text())),
        }
    }
}

impl Client {
    /// A client for `http://host:port[/prefix]` or `https://...`, trusting the platform's root
    /// certificates.
    pub fn new(url: &str) -> Result<Self, ClientError> {
        Self::with_options(url, ClientOptions::default())
    }

    /// A client with options (a CA certificate to trust).
    pub fn with_options(url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ClientError(format!("\"{url}\" is not a URL: {e}")))?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => {
                return Err(ClientError(format!(
                    "only http:// and https:// URLs are supported, not {other}://"
                )))
            }
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ClientError(format!("\"{url}\" names no host")));
        }
        let http = build(&options, None)?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            options,
            http,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// How it trusts TLS certificates.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<HttpResponse, ClientError> {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<HttpResponse, ClientError> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// Any request.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, ClientError> {
        send(&self.http, &self.base, method, path, body).await
    }
}

/// A reqwest client: HTTP/1.1, the request timeout, the platform's roots and the CA given.
fn build(
    options: &ClientOptions,
    idle_per_host: Option<usize>,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .http1_only()
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .user_agent(concat!("carbon-ledger/", env!("CARGO_PKG_VERSION")));
    if let Some(max) = idle_per_host {
        builder = builder.pool_max_idle_per_host(max);
    }
    if let Some(path) = &options.ca_cert {
        for cert in read_ca(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ClientError(format!("cannot set up the HTTP client: {e}")))
}

/// The certificates of a PEM file.
fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let pem = std::fs::read(path).map_err(|e| {
        ClientError(format!(
            "cannot read the CA certificate {}: {e}",
            path.display()
        ))
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| ClientError(format!("{} is not a PEM certificate: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ClientError(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// What went wrong reaching a service, in words, with the whole chain of causes (a TLS error
/// says which certificate was refused).
fn describe(url: &str, error: &reqwest::Error) -> ClientError {
    let mut text = if error.is_timeout() {
        format!("no answer from {url} in time")
    } else if error.is_connect() {
        format!("cannot connect to {url}")
    } else {
        format!("the request to {url} failed")
    };
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    ClientError(text)
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<HttpResponse, ClientError> {
    let url = format!("{base}{path}");
    let mut request = http.request(method, &url);
    if let Some(body) = body {
        request = request
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    let response = request.send().await.map_err(|e| describe(&url, &e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| describe(&url, &e))?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// One kept-alive HTTP/1.1 connection: requests go one after another over the same socket (for
/// load tools, where a connection per request would measure the kernel rather than the service).
#[derive(Debug)]
pub struct Connection {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A connection of its own to the service (opened by its first request, then kept alive).
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        Ok(Connection {
            base: self.base.clone(),
            http: build(&self.options, Some(1))?,
        })
    }
}

impl Connection {
    /// `POST path` with a JSON body.
    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<HttpResponse, ClientError> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Any request, over this connection.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, ClientError> {
        send(&self.http, &self.base, method, path, body).await
    }
}
