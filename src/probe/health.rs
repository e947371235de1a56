//! `GET /health`: TGI answers 200 with an empty body, TEI 200; any 2xx body is fine.

use reqwest::Method;

use super::{Check, Spec, join};
use crate::config::EndpointConfig;

pub(super) fn spec(ep: &EndpointConfig) -> Spec {
    Spec {
        method: Method::GET,
        url: join(&ep.url, "/health"),
        body: None,
        check: Check::AnyBody,
    }
}
