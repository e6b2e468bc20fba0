//! Starting and stopping a ferrokit server: binds the HTTP listener and the
//! shared UDP port, runs the room reaper, and on shutdown sends every
//! participant `leave` (SERVER_SHUTDOWN) before returning.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;

use crate::auth::KeyProvider;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::net::UdpMux;
use crate::rooms::RoomManager;
use crate::webhook::{WebhookError, Webhooks};

/// Shared state of a running server.
pub struct ServerState {
    pub config: Config,
    pub keys: KeyProvider,
    pub rooms: RoomManager,
    pub metrics: Arc<Metrics>,
    pub mux: UdpMux,
    /// The workers that write forwarded packets to subscribers.
    pub egress: Arc<crate::session::Egress>,
    /// Address in ICE candidates: node_ip and the UDP port.
    pub candidate_addr: SocketAddr,
    pub node_id: String,
    sessions: AtomicUsize,
    shutting_down: AtomicBool,
}

/// Counts a live session while held.
pub struct SessionGuard(Arc<ServerState>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ServerState {
    /// Marks a session as running until the guard drops.
    pub fn session_guard(self: &Arc<Self>) -> SessionGuard {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    /// Whether shutdown has begun (new joins get 503).
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// A running server.
pub struct Server {
    state: Arc<ServerState>,
    http_addr: SocketAddr,
    udp_addr: SocketAddr,
    http_task: tokio::task::JoinHandle<()>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no API keys configured (use --dev, --keys or keys: in the config)")]
    NoKeys,
    #[error("webhook: {0}")]
    Webhook(#[from] WebhookError),
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Connections a TCP listener queues before the server accepts them (the
/// kernel caps it at `net.core.somaxconn`, 4096 on current kernels).
/// `TcpListener::bind` asks for 128: 200 clients joining at once overflowed
/// it while the runtime was busy, and each dropped handshake cost its
/// client a 1 s SYN retransmission (join-storm's join p99 went from ~0.4 s
/// to ~1.1 s in the runs that overflowed).
pub const TCP_BACKLOG: u32 = 4096;

/// Binds a TCP listener with [`TCP_BACKLOG`], naming it in the error.
fn bind_tcp(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    let bind = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(TCP_BACKLOG)
    };
    bind().map_err(|source| StartError::Bind { what, addr, source })
}

/// Egress workers to start: one per core the process may use, so one
/// large room's forwarding spreads over every core.
fn egress_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Server {
    /// Binds the HTTP/WebSocket port and the UDP media port and starts serving.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        if config.keys.is_empty() {
            return Err(StartError::NoKeys);
        }
        let webhooks = Webhooks::start(&config.webhook, |k| config.keys.get(k).cloned())?;
        let bind_ip = config.bind_ip();
        let udp_bind = SocketAddr::new(bind_ip, config.rtc.udp_port);
        let mux = UdpMux::bind(udp_bind)
            .await
            .map_err(|source| StartError::Bind {
                what: "UDP",
                addr: udp_bind,
                source,
            })?;
        let udp_addr = mux.local_addr().unwrap_or(udp_bind);
        let http_bind = SocketAddr::new(bind_ip, config.port);
        let listener = bind_tcp("HTTP", http_bind)?;
        let http_addr = listener.local_addr().unwrap_or(http_bind);
        let metrics_listener = match config.prometheus_port.filter(|p| *p != 0) {
            Some(port) => Some(bind_tcp("Prometheus", SocketAddr::new(bind_ip, port))?),
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(ServerState {
            keys: KeyProvider::new(config.keys.clone()),
            candidate_addr: SocketAddr::new(config.node_ip(), udp_addr.port()),
            node_id: crate::ids::new_id("ND_"),
            config,
            rooms: RoomManager::new(Arc::new(webhooks)),
            egress: crate::session::Egress::start(
                mux.socket().clone(),
                egress_workers(),
                metrics.clone(),
            ),
            metrics,
            mux,
            sessions: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
        });
        let app = crate::service::router(state.clone());
        let http_task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("http server: {e}");
            }
        });
        if let Some(listener) = metrics_listener {
            let app = crate::service::metrics_router(state.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("metrics server: {e}");
                }
            });
        }
        let reaper = Arc::downgrade(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(state) = reaper.upgrade() else { break };
                state.rooms.reap(Instant::now());
            }
        });
        Ok(Self {
            state,
            http_addr,
            udp_addr,
            http_task,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound UDP media address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The shared state (rooms, keys), for APIs built on the server.
    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Sends `leave` (SERVER_SHUTDOWN) to every participant, waits up to
    /// `grace` for their sessions to end, and stops serving.
    pub async fn shutdown(self, grace: Duration) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
        for room in self.state.rooms.all() {
            room.close_all(proto::DisconnectReason::ServerShutdown);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.state.sessions.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.http_task.abort();
    }
}
