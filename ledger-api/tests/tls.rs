//! The CLI reaches a service behind TLS: the router served over HTTPS on loopback with a
//! self-signed certificate made here, reached by the client library, `carbon-ledger submit` and
//! `carbon-ledger demo` with `--ca-cert`, and refused without it.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use ledger_api::client::{Client, ClientOptions};
use ledger_api::demo::{self, DemoOptions};
use ledger_api::Limits;
use tokio_rustls::rustls;

/// A self-signed certificate for `localhost` and 127.0.0.1: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    (cert.cert.pem(), cert.key_pair.serialize_pem())
}

/// Serves `router` over TLS on a loopback port until the test ends.
async fn serve_tls(router: axum::Router, cert_pem: &str, key_pem: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_talks_to_an_https_service_it_trusts_and_refuses_one_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = self_signed();
    let ca = write(dir.path(), "ca.pem", &cert_pem);
    let (router, _, case) = memory_app(Limits::default());
    let addr = serve_tls(router, &cert_pem, &key_pem).await;
    let url = format!("https://localhost:{}", addr.port());

    // Trusted through --ca-cert: the reference case goes in over HTTPS.
    let client = Client::with_options(
        &url,
        ClientOptions {
            ca_cert: Some(ca.clone()),
        },
    )
    .unwrap();
    let health = client.get("/healthz").await.unwrap();
    assert_eq!(health.status.as_u16(), 200, "{}", health.text());
    let outcomes = demo::replay(&client, &case).await.unwrap();
    assert!(outcomes.iter().filter(|o| o.receipt.is_some()).count() > 15);
    let acquisition = client.get("/v1/trades/T-2022-0001").await.unwrap();
    assert_eq!(
        acquisition.ok_json::<serde_json::Value>().unwrap()["amount"],
        "588300.00"
    );
    // A kept-alive connection (the load tool's) speaks TLS too.
    let mut connection = client.connect().await.unwrap();
    for _ in 0..3 {
        let answer = connection
            .send(axum::http::Method::GET, "/v1/ledger", None)
            .await
            .unwrap();
        assert_eq!(answer.status.as_u16(), 200);
    }

    // Not trusted: the platform's roots do not know a self-signed certificate.
    let untrusted = Client::new(&url)
        .unwrap()
        .get("/healthz")
        .await
        .unwrap_err();
    assert!(
        untrusted.0.to_lowercase().contains("certificate"),
        "{untrusted}"
    );

    // The binary: submit over HTTPS with --ca-cert, and refused without it.
    let signed = case.sign(
        case.body(
            "CERT-TLS-1",
            &case.at(30),
            serde_json::json!({"type": "retire", "holder": "enterprise-b", "batch": "XZH-2021",
                               "quantity": "1", "beneficiary": "Enterprise B", "purpose": "over TLS"}),
        ),
        &["enterprise-b"],
    );
    let file = write(
        dir.path(),
        "retire.json",
        &serde_json::to_string(&signed).unwrap(),
    );
    let exe = env!("CARGO_BIN_EXE_carbon-ledger");
    let refused = Command::new(exe)
        .args(["submit", "--url", &url])
        .arg(&file)
        .env_remove("CARBON_LEDGER_CA_CERT")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(said.contains("certificate"), "{said}");
    let submitted = Command::new(exe)
        .args(["submit", "--url", &url, "--ca-cert"])
        .arg(&ca)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let receipt: serde_json::Value = serde_json::from_slice(&submitted.stdout).unwrap();
    assert_eq!(receipt["id"], "CERT-TLS-1");
}

/// `demo --url https://... --ca-cert` replays the reference case on a service behind TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_against_an_https_service() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = self_signed();
    let ca = write(dir.path(), "ca.pem", &cert_pem);
    let key_file = dir.path().join("operator.key");
    ledger_api::keys::write_key_file(&key_file, &operator_key()).unwrap();
    let (router, _, _) = memory_app(Limits::default());
    let addr = serve_tls(router, &cert_pem, &key_pem).await;
    let mut out = Vec::new();
    demo::run(
        DemoOptions {
            url: Some(format!("https://localhost:{}", addr.port())),
            operator_key: Some(key_file),
            ca_cert: Some(ca),
            keys: None,
        },
        &mut out,
    )
    .await
    .unwrap();
    let report = String::from_utf8(out).unwrap();
    assert!(report.contains("588,300.00"), "{report}");
    assert!(report.contains("https://localhost"), "{report}");
}
