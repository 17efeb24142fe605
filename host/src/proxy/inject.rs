//! Credential injection: a route's `inject` header set to its secret,
//! replacing whatever the guest sent (`docs/proxy.md`, step 6).
//!
//! The secrets do not change while the proxy runs, so each route's header
//! is rendered and checked once, when the proxy starts; a request only
//! clones it.

use std::collections::HashMap;

use hudsucker::hyper::header::{HeaderMap, HeaderName, HeaderValue};

use super::reply::Refusal;
use crate::manifest::Route;

/// Why a route's header cannot be injected (the request is refused with
/// status 500 and this rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unusable {
    /// `inject-secret-missing`: the secret was not loaded.
    Missing,
    /// `inject-bad-value`: the rendered value or the header name is not
    /// valid in HTTP.
    BadValue,
}

/// What a route injects, ready to be cloned into a request.
#[derive(Debug)]
enum Prepared {
    Header(HeaderName, HeaderValue),
    Unusable { secret: String, why: Unusable },
}

/// Every route's injected header, in the routes' order (`None`: the route
/// injects nothing). Built from the same routes the handler matches.
#[derive(Debug, Default)]
pub struct Injections {
    by_route: Vec<Option<Prepared>>,
}

impl Injections {
    /// Render every route's header with its secret.
    pub fn new(routes: &[Route], secrets: &HashMap<String, String>) -> Injections {
        let by_route = routes
            .iter()
            .map(|r| {
                let i = r.inject.as_ref()?;
                let unusable = |why| Prepared::Unusable {
                    secret: i.secret.clone(),
                    why,
                };
                let Some(secret) = secrets.get(&i.secret) else {
                    return Some(unusable(Unusable::Missing));
                };
                let value = HeaderValue::try_from(i.render(secret));
                let name = HeaderName::from_bytes(i.header.as_bytes());
                Some(match (name, value) {
                    (Ok(name), Ok(mut value)) => {
                        // Never printed, never compressed into a table.
                        value.set_sensitive(true);
                        Prepared::Header(name, value)
                    }
                    _ => unusable(Unusable::BadValue),
                })
            })
            .collect();
        Injections { by_route }
    }

    /// Set `route`'s injected header in `headers` (replacing any the guest
    /// sent). `route` must be one of the `routes` this was built from;
    /// a route that injects nothing leaves `headers` as they are.
    pub(super) fn apply(
        &self,
        routes: &[Route],
        route: &Route,
        headers: &mut HeaderMap,
    ) -> Result<(), Refusal> {
        let prepared = routes
            .iter()
            .position(|r| std::ptr::eq(r, route))
            .and_then(|i| self.by_route.get(i)?.as_ref());
        match prepared {
            None => Ok(()),
            Some(Prepared::Header(name, value)) => {
                headers.insert(name.clone(), value.clone());
                Ok(())
            }
            Some(Prepared::Unusable { secret, why }) => Err(match why {
                Unusable::Missing => Refusal {
                    status: 500,
                    rule: "inject-secret-missing".into(),
                    reason: format!("secret {secret:?} is not loaded"),
                },
                Unusable::BadValue => Refusal {
                    status: 500,
                    rule: "inject-bad-value".into(),
                    reason: format!("secret {secret:?} is not a valid header value"),
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{HostPattern, Inject};

    fn route(host: &str, inject: Option<(&str, &str, &str)>) -> Route {
        Route {
            host: HostPattern::parse(host).unwrap(),
            ports: vec![443],
            methods: None,
            paths: Vec::new(),
            inject: inject.map(|(header, secret, format)| Inject {
                header: header.into(),
                secret: secret.into(),
                format: format.into(),
            }),
        }
    }

    #[test]
    fn rendered_once_applied_per_route() {
        let routes = vec![
            route("a.test", Some(("authorization", "api", "Bearer {secret}"))),
            route("b.test", None),
            route("c.test", Some(("x-key", "gone", "{secret}"))),
            route("d.test", Some(("x-key", "nl", "{secret}"))),
            route("e.test", Some(("bad header", "api", "{secret}"))),
        ];
        let secrets = HashMap::from([
            ("api".to_string(), "sk-123".to_string()),
            ("nl".to_string(), "a\nb".to_string()),
        ]);
        let inj = Injections::new(&routes, &secrets);
        // Guest-sent values are replaced.
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("placeholder"));
        inj.apply(&routes, &routes[0], &mut h).unwrap();
        assert_eq!(h.get_all("authorization").iter().count(), 1);
        assert_eq!(h["authorization"], "Bearer sk-123");
        assert!(h["authorization"].is_sensitive());
        // A route without inject changes nothing.
        let mut h = HeaderMap::new();
        inj.apply(&routes, &routes[1], &mut h).unwrap();
        assert!(h.is_empty());
        // Refusals name the rule and the secret, never its value.
        let rule = |i: usize| {
            let e = inj
                .apply(&routes, &routes[i], &mut HeaderMap::new())
                .unwrap_err();
            assert_eq!(e.status, 500);
            assert!(!e.reason.contains("a\nb") && !e.reason.contains("sk-123"));
            e.rule
        };
        assert_eq!(rule(2), "inject-secret-missing");
        assert_eq!(rule(3), "inject-bad-value");
        assert_eq!(rule(4), "inject-bad-value");
        // The prepared values are not printed.
        assert!(!format!("{inj:?}").contains("sk-123"));
        // A route from another list (not one of `routes`) injects nothing.
        let other = route("a.test", Some(("authorization", "api", "{secret}")));
        let mut h = HeaderMap::new();
        inj.apply(&routes, &other, &mut h).unwrap();
        assert!(h.is_empty());
    }
}
