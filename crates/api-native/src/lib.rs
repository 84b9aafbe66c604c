//! Lifeboat native REST API (axum) with its OpenAPI document.
