//! Credential injection: a route's `inject` header set to its secret,
//! replacing whatever the guest sent (`docs/proxy.md`, step 6).

use std::collections::HashMap;

use hudsucker::hyper::header::{HeaderMap, HeaderName, HeaderValue};

use super::reply::Refusal;
use crate::manifest::Inject;

/// Set the route's injected header to the rendered secret.
pub(super) fn inject_header(
    headers: &mut HeaderMap,
    i: &Inject,
    secrets: &HashMap<String, String>,
) -> Result<(), Refusal> {
    let Some(secret) = secrets.get(&i.secret) else {
        return Err(Refusal {
            status: 500,
            rule: "inject-secret-missing".into(),
            reason: format!("secret {:?} is not loaded", i.secret),
        });
    };
    let bad = || Refusal {
        status: 500,
        rule: "inject-bad-value".into(),
        reason: format!("secret {:?} is not a valid header value", i.secret),
    };
    let mut v = HeaderValue::try_from(i.render(secret)).map_err(|_| bad())?;
    v.set_sensitive(true);
    let name = HeaderName::from_bytes(i.header.as_bytes()).map_err(|_| bad())?;
    headers.insert(name, v);
    Ok(())
}
