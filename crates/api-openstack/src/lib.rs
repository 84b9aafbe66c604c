//! Lifeboat OpenStack front (being built).

/// The front's router (placeholder until the front lands).
pub fn router(_engine: lifeboat_engine::Engine, _public_url: String) -> axum::Router {
    axum::Router::new()
}
