//! The listeners: the RPC and WebSocket servers on their ports, closed and reopened on demand
//! (the refused-connections fault), with every open connection cut when they close.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::faults::ListenerCommand;
use super::node::{ConnectionCutter, Node};
use super::{rpc, ws};

/// How long reopening a port may take when another socket briefly holds it.
const REBIND_PATIENCE: Duration = Duration::from_secs(5);

/// Binds a listening socket the way `std` does (with `SO_REUSEADDR` on Unix, so a port can be
/// reopened while old connections linger in TIME_WAIT), ready for Tokio.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves both ports until `shutdown` fires, obeying listener commands from the faults handle.
pub(crate) async fn supervise(
    node: Arc<Node>,
    listeners: (std::net::TcpListener, std::net::TcpListener),
    addrs: (SocketAddr, SocketAddr),
    mut commands: UnboundedReceiver<ListenerCommand>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut servers = Servers { node, addrs, tasks: Vec::new() };
    if let Err(e) = servers.serve(listeners) {
        tracing::error!(error = %e, "mock node: cannot serve");
    }
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            command = commands.recv() => {
                let Some(command) = command else { break };
                let done = if command.open {
                    servers.reopen().await
                } else {
                    servers.close().await;
                    true
                };
                // The caller may have given up waiting; nothing to do then.
                let _ = command.done.send(done);
            }
        }
    }
    servers.close().await;
}

struct Servers {
    node: Arc<Node>,
    /// RPC and WebSocket addresses, the actual ports.
    addrs: (SocketAddr, SocketAddr),
    tasks: Vec<JoinHandle<()>>,
}

impl Servers {
    fn serve(
        &mut self,
        (rpc_listener, ws_listener): (std::net::TcpListener, std::net::TcpListener),
    ) -> io::Result<()> {
        let rpc_listener = Guarded::new(TcpListener::from_std(rpc_listener)?, &self.node.connections);
        let ws_listener = Guarded::new(TcpListener::from_std(ws_listener)?, &self.node.connections);
        let rpc_app = rpc::router(self.node.clone());
        let ws_app = ws::router(self.node.clone());
        self.tasks.push(tokio::spawn(async move {
            let _ = axum::serve(rpc_listener, rpc_app).await;
        }));
        self.tasks.push(tokio::spawn(async move {
            let _ = axum::serve(ws_listener, ws_app).await;
        }));
        Ok(())
    }

    /// Stops accepting (the listening sockets are closed once their tasks are gone) and cuts
    /// every connection.
    async fn close(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        self.node.connections.cut_all();
    }

    /// Listens again on the same ports; false if they could not be bound in time.
    async fn reopen(&mut self) -> bool {
        if !self.tasks.is_empty() {
            return true;
        }
        let deadline = tokio::time::Instant::now() + REBIND_PATIENCE;
        loop {
            match bind(self.addrs.0).and_then(|rpc| Ok((rpc, bind(self.addrs.1)?))) {
                Ok(listeners) => {
                    return match self.serve(listeners) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(error = %e, "mock node: cannot serve again");
                            false
                        }
                    };
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::error!(error = %e, "mock node: cannot reopen its ports");
                    return false;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// A listener whose connections can all be cut through the node's [`ConnectionCutter`].
struct Guarded {
    inner: TcpListener,
    cutter: Arc<ConnectionCutter>,
}

impl Guarded {
    fn new(inner: TcpListener, cutter: &Arc<ConnectionCutter>) -> Self {
        Guarded { inner, cutter: cutter.clone() }
    }
}

impl axum::serve::Listener for Guarded {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((inner, addr)) => {
                    let waker = Arc::new(AtomicWaker::new());
                    self.cutter.register(&waker);
                    let born = self.cutter.generation();
                    return (GuardedStream { inner, born, cutter: self.cutter.clone(), waker }, addr);
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails its next read or write once it is cut; a cut wakes it, so an idle
/// keep-alive or WebSocket connection closes at once.
pub(crate) struct GuardedStream {
    inner: TcpStream,
    born: u64,
    cutter: Arc<ConnectionCutter>,
    waker: Arc<AtomicWaker>,
}

impl GuardedStream {
    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        self.waker.register(cx.waker());
        if self.cutter.generation() != self.born {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection cut by the mock node"));
        }
        Ok(())
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
