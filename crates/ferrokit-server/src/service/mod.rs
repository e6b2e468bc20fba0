//! The HTTP edge (axum): health, `/rtc` and `/rtc/v1` with their
//! `/validate`, and the WebSocket session start.

pub mod join;
mod rtc;

use std::sync::Arc;

use axum::routing::get;
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
        .with_state(state)
}
