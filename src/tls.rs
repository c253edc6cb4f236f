//! TLS for the endpoints custos serves (the HTTP API and the PostgreSQL
//! endpoint), with rustls, when `api.tls_cert` and `api.tls_key` name a
//! certificate chain and its private key (PEM files).
//!
//! Handshakes run in tasks of their own, each within [`HANDSHAKE_LIMIT`],
//! so a client that connects and says nothing holds up no one else; a
//! failed handshake is logged and counts for nothing more.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its handshake.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// A certificate or key that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate chain {path}: {why}")]
    Certificate { path: String, why: String },
    #[error("cannot read the TLS private key {path}: {why}")]
    Key { path: String, why: String },
    #[error("the TLS certificate and key do not go together: {0}")]
    Config(String),
}

/// A server configuration from a PEM certificate chain (leaf first) and a
/// PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certificate = |why: String| TlsError::Certificate {
        path: cert.display().to_string(),
        why,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| certificate(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(certificate("it holds no CERTIFICATE block".into()));
    }
    // The key's error never quotes the file: it is a secret.
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        why: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "it holds no private key block".into(),
            rustls::pki_types::pem::Error::Io(e) => e.to_string(),
            _ => "it is not a PEM private key".into(),
        },
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Completes a server handshake on `socket` within [`HANDSHAKE_LIMIT`].
pub async fn handshake(
    acceptor: &TlsAcceptor,
    socket: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(socket)).await {
        Ok(done) => done,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "TLS handshake took too long",
        )),
    }
}

/// A listener whose connections are TLS streams (for `axum::serve`):
/// TCP connections are accepted and their handshakes completed by a
/// background task; `accept` yields the finished ones.
pub struct TlsListener {
    local: SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (send, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (socket, peer) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "https: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if send.is_closed() {
                    return;
                }
                let (acceptor, send) = (acceptor.clone(), send.clone());
                tokio::spawn(async move {
                    match handshake(&acceptor, socket).await {
                        Ok(stream) => {
                            let _ = send.send((stream, peer)).await;
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task ended (it never does while the listener
            // lives): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
