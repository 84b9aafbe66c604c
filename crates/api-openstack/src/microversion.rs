//! Compute API microversions: `OpenStack-API-Version: compute 2.X` and the
//! legacy `X-OpenStack-Nova-API-Version: 2.X`, echoed back with `Vary`.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::fault::Fault;

/// Lowest supported minor version (2.1).
pub const MIN: u16 = 1;
/// Highest supported minor version (2.100).
pub const MAX: u16 = 100;

/// The request's compute microversion, `2.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mv(pub u16);

impl Mv {
    /// Whether the request is at `2.minor` or later.
    pub fn ge(self, minor: u16) -> bool {
        self.0 >= minor
    }
    /// Whether the request is at most `2.minor`.
    pub fn le(self, minor: u16) -> bool {
        self.0 <= minor
    }
    /// `2.N`.
    pub fn as_string(self) -> String {
        format!("2.{}", self.0)
    }
}

/// Parses the version out of the request headers. None header: 2.1.
pub fn parse(headers: &HeaderMap) -> Result<Mv, Fault> {
    let mut raw: Option<String> = None;
    for v in headers.get_all("openstack-api-version") {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let mut it = item.split_whitespace();
            if let (Some(svc), Some(ver)) = (it.next(), it.next()) {
                if svc.eq_ignore_ascii_case("compute") {
                    raw = Some(ver.to_string());
                }
            }
        }
    }
    if raw.is_none() {
        raw = headers
            .get("x-openstack-nova-api-version")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string());
    }
    let Some(raw) = raw else {
        return Ok(Mv(MIN));
    };
    if raw.eq_ignore_ascii_case("latest") {
        return Ok(Mv(MAX));
    }
    let invalid = || {
        Fault::bad_request(format!(
            "API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum."
        ))
    };
    let (major, minor) = raw.split_once('.').ok_or_else(invalid)?;
    let (Ok(major), Ok(minor)) = (major.parse::<u16>(), minor.parse::<u16>()) else {
        return Err(invalid());
    };
    if major != 2 || !(MIN..=MAX).contains(&minor) {
        return Err(Fault::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "Version {major}.{minor} is not supported by the API. Minimum is 2.{MIN} and maximum is 2.{MAX}."
            ),
        ));
    }
    Ok(Mv(minor))
}

fn echo(resp: &mut Response, mv: Mv) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("compute {}", mv.as_string())) {
        h.insert("openstack-api-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&mv.as_string()) {
        h.insert("x-openstack-nova-api-version", v);
    }
    h.insert(
        "vary",
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
}

/// Middleware for the versioned compute routes: parses the version into
/// the request extensions and echoes it on the response.
pub async fn layer(mut req: Request, next: Next) -> Response {
    match parse(req.headers()) {
        Ok(mv) => {
            req.extensions_mut().insert(mv);
            let mut resp = next.run(req).await;
            echo(&mut resp, mv);
            resp
        }
        Err(f) => {
            let mut resp = f.into_response();
            echo(&mut resp, Mv(MIN));
            resp
        }
    }
}

#[axum::async_trait]
impl<S: Send + Sync> FromRequestParts<S> for Mv {
    type Rejection = Fault;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Mv, Fault> {
        match parts.extensions.get::<Mv>() {
            Some(m) => Ok(*m),
            None => parse(&parts.headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn versions() {
        assert_eq!(parse(&h(&[])).unwrap(), Mv(1));
        assert_eq!(
            parse(&h(&[("OpenStack-API-Version", "compute 2.47")])).unwrap(),
            Mv(47)
        );
        assert_eq!(
            parse(&h(&[("X-OpenStack-Nova-API-Version", "2.9")])).unwrap(),
            Mv(9)
        );
        assert_eq!(
            parse(&h(&[("OpenStack-API-Version", "compute latest")])).unwrap(),
            Mv(MAX)
        );
        assert_eq!(
            parse(&h(&[("OpenStack-API-Version", "image 2.3, compute 2.60")])).unwrap(),
            Mv(60)
        );
        // The new header wins over the legacy one.
        assert_eq!(
            parse(&h(&[
                ("OpenStack-API-Version", "compute 2.10"),
                ("X-OpenStack-Nova-API-Version", "2.20")
            ]))
            .unwrap(),
            Mv(10)
        );
        let e = parse(&h(&[("OpenStack-API-Version", "compute 2.101")])).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
        assert_eq!(
            e.message,
            "Version 2.101 is not supported by the API. Minimum is 2.1 and maximum is 2.100."
        );
        let e = parse(&h(&[("OpenStack-API-Version", "compute 3.0")])).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
        let e = parse(&h(&[("OpenStack-API-Version", "compute 2.x")])).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
