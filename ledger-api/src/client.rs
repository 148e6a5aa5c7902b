//! A small HTTP/1.1 client for the CLI, the demo and the tests, on the hyper that axum already
//! brings: one connection per request (or a kept-alive [`Connection`]), plain `http://` only (put TLS in a reverse proxy in front
//! of the service; the CLI's offline commands need no network at all).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Why a request could not be made or its answer read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);

/// The longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A service's base URL.
#[derive(Clone, Debug)]
pub struct Client {
    authority: String,
    base_path: String,
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
    /// A client for `http://host:port[/prefix]`.
    pub fn new(url: &str) -> Result<Self, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ClientError(format!("\"{url}\" is not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(ClientError(format!(
                    "only http:// URLs are supported, not {other}://"
                )))
            }
            None => return Err(ClientError(format!("\"{url}\" has no http:// scheme"))),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError(format!("\"{url}\" names no host")))?;
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{}:80", authority.host()),
        };
        Ok(Self {
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
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
        tokio::time::timeout(REQUEST_TIMEOUT, self.request_inner(method, path, body))
            .await
            .map_err(|_| ClientError(format!("no answer from {} in time", self.authority)))?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, ClientError> {
        self.connect().await?.send(method, path, body).await
    }
}

/// One kept-alive HTTP/1.1 connection: requests go one after another over the same socket (for
/// load tools, where a connection per request would measure the kernel rather than the service).
#[derive(Debug)]
pub struct Connection {
    authority: String,
    base_path: String,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Client {
    /// Opens a connection to the service.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            ClientError(format!("{what} http://{}: {e}", self.authority))
        };
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| fail("cannot connect to", &e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| fail("cannot set up", &e))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail("cannot talk to", &e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            authority: self.authority.clone(),
            base_path: self.base_path.clone(),
            sender,
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
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            ClientError(format!("{what} http://{}: {e}", self.authority))
        };
        self.sender
            .ready()
            .await
            .map_err(|e| fail("the connection closed to", &e))?;
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(header::HOST, &self.authority);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail("cannot make a request to", &e))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| fail("no answer from", &e))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| fail("the answer broke off from", &e))?
            .to_bytes();
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
