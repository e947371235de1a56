//! Plain `GET` of the configured URL: any 2xx is a success.

use reqwest::Method;

use super::{Check, Spec};
use crate::config::EndpointConfig;

pub(super) fn spec(ep: &EndpointConfig) -> Spec {
    Spec {
        method: Method::GET,
        url: ep.url.clone(),
        body: None,
        check: Check::AnyBody,
    }
}
