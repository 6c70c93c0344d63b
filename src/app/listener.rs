//! The TCP acceptor: poem's, with `TCP_NODELAY` set on every accepted socket, so small frames (streamed
//! chunks, pongs) leave at once instead of waiting on Nagle's algorithm and the peer's delayed ACK.

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::TcpStream;

/// Accepts TCP connections with Nagle's algorithm off.
pub struct NoDelayAcceptor {
    inner: TcpAcceptor,
}

impl NoDelayAcceptor {
    /// Wraps a bound acceptor.
    pub fn new(inner: TcpAcceptor) -> Self {
        Self { inner }
    }
}

impl Acceptor for NoDelayAcceptor {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> std::io::Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        if let Err(err) = io.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY not set");
        }
        Ok((io, local, remote, scheme))
    }
}
