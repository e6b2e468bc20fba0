//! The HTTP edge (axum): health, `/rtc` and `/rtc/v1` with their
//! `/validate`, the WebSocket session start, and the Twirp server API.

pub mod join;
mod rtc;
pub mod twirp;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::server::ServerState;

/// All routes of the server.
pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/", get(|| async { "OK" }))
        .route("/rtc", get(rtc::rtc_v0))
        .route("/rtc/v1", get(rtc::rtc_v1))
        .route("/rtc/validate", get(rtc::validate_v0))
        .route("/rtc/v1/validate", get(rtc::validate_v1))
        .route(
            "/twirp/livekit.RoomService/{method}",
            post(twirp::room_service).options(twirp::preflight),
        )
        .with_state(state)
}

/// The Prometheus listener's routes: `GET /metrics`.
pub fn metrics_router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<ServerState>>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        s.metrics.render(&s.rooms),
                    )
                },
            ),
        )
        .with_state(state)
}
