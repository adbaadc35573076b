//! Who may use the server, as Jupyter does it: requests must name this machine as their host (loopback
//! names, or the address bound), so that a web page cannot reach the server through DNS rebinding;
//! state-changing requests from another origin are refused; when an access token is required (always
//! beyond loopback), every request carries it — in the printed URL's `?token=`, which sets a cookie,
//! then in that cookie (or an `Authorization: token …` header); and every response carries a
//! Content-Security-Policy, `X-Content-Type-Options: nosniff` and frame denial.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The page's policy: its script, styles and images come from this server only (no inline code), it
/// talks to this server only, and no other page may frame it.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A new access token: 128 random bits from the operating system's generator, in hex.
pub(crate) fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The server's access rules.
#[derive(Debug)]
pub(crate) struct Access {
    /// The address bound, also accepted as a host name (unless it is a wildcard address).
    bound: IpAddr,
    /// The token every request must carry, if one is required.
    token: Option<String>,
    /// The cookie that carries it (named after the port: servers on other ports keep their own).
    cookie: String,
}

/// How a request proved it may use the server.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// No token needed, or it came in a cookie or a header.
    Plain,
    /// The token came in the URL: the response sets the cookie.
    FromUrl,
}

impl Access {
    /// The rules of a server bound to `bound`; a token is required when `token` is given.
    pub(crate) fn new(bound: SocketAddr, token: Option<String>) -> Access {
        Access { bound: bound.ip(), token, cookie: format!("impasto-token-{}", bound.port()) }
    }

    /// Whether `host` (a `Host` header's name, without the port) names this server: a loopback name
    /// or address, or the address bound. A server bound to a wildcard address (0.0.0.0, ::) is
    /// reached by names it cannot know, and takes any (it always requires its token).
    fn host_allowed(&self, host: &str) -> bool {
        if self.bound.is_unspecified() {
            return true;
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let ip = name.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&name);
        match ip.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.bound,
            Err(_) => name == "localhost",
        }
    }

    /// Checks a request; on success, says how it passed.
    fn check(&self, method: &Method, headers: &HeaderMap, query: Option<&str>) -> Result<Pass, ApiError> {
        let refuse = |m: String| ApiError::new(StatusCode::FORBIDDEN, m);
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        if !self.host_allowed(host_name(host)) {
            return Err(refuse(format!(
                "refused: this server answers requests for localhost or {}, not for host `{}` \
                 (open the URL impasto serve printed)",
                self.bound,
                crate::error::clip(host, 60)
            )));
        }
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && !same_origin(headers, host) {
            return Err(refuse("refused: a request from another site cannot change anything here".into()));
        }
        let Some(token) = &self.token else { return Ok(Pass::Plain) };
        let mut from_url =
            query.into_iter().flat_map(|q| q.split('&')).filter_map(|p| p.strip_prefix("token="));
        if from_url.any(|t| same_secret(t, token)) {
            return Ok(Pass::FromUrl);
        }
        let from_cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && same_secret(value, token));
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("token ").or_else(|| v.strip_prefix("Bearer ")))
            .is_some_and(|t| same_secret(t.trim(), token));
        if from_cookie || from_header {
            return Ok(Pass::Plain);
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server needs its access token: open the URL impasto serve printed (it ends with ?token=…)",
        ))
    }

    /// The `Set-Cookie` value that keeps the token for the page's later requests.
    fn cookie(&self, token: &str) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("{}={token}; Path=/; HttpOnly; SameSite=Strict", self.cookie)).ok()
    }
}

/// The host name of a `Host` header value (`name:port`, `[v6]:port` or a bare name).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Whether a state-changing request comes from a page of this server, or from no page at all (a
/// command-line client sends no `Origin`; browsers always do on such requests).
fn same_origin(headers: &HeaderMap, host: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&format!("http://{host}"))),
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The security headers every response carries.
fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    response
}

/// The middleware: checks every request, keeps a token given in the URL as a cookie (the page itself
/// is then reloaded without it), and adds the security headers.
pub(crate) async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let pass = access.check(request.method(), request.headers(), request.uri().query());
    let pass = match pass {
        Ok(pass) => pass,
        Err(e) => return secure(e.into_response()),
    };
    let cookie = match (pass, &access.token) {
        (Pass::FromUrl, Some(token)) => access.cookie(token),
        _ => None,
    };
    let mut response = if cookie.is_some() && request.method() == Method::GET && request.uri().path() == "/" {
        // The token leaves the address bar (and the history): the cookie carries it from now on.
        (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
    } else {
        next.run(request).await
    };
    if let Some(cookie) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    secure(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_this_machines_host_names_are_served() {
        let local = Access::new("127.0.0.1:8787".parse().unwrap(), None);
        for host in ["127.0.0.1:8787", "localhost:8787", "LOCALHOST", "localhost.", "[::1]:8787", "127.0.0.2"]
        {
            assert!(local.check(&Method::GET, &headers(&[("host", host)]), None).is_ok(), "{host}");
        }
        for host in
            ["evil.example.com", "evil.example.com:8787", "localhost.evil.example", "10.0.0.5:8787", ""]
        {
            let e = local.check(&Method::GET, &headers(&[("host", host)]), None).unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{host}");
        }
        let lan = Access::new("192.168.1.20:80".parse().unwrap(), Some("t".into()));
        assert!(lan.host_allowed("192.168.1.20") && lan.host_allowed("localhost"));
        assert!(!lan.host_allowed("192.168.1.21") && !lan.host_allowed("evil.example.com"));
        let any = Access::new("0.0.0.0:80".parse().unwrap(), Some("t".into()));
        assert!(any.host_allowed("my-machine.lan"));
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("a.b:1"), "a.b");
    }

    #[test]
    fn cross_site_changes_are_refused() {
        let a = Access::new("127.0.0.1:8787".parse().unwrap(), None);
        let host = ("host", "127.0.0.1:8787");
        let ok = |h: &[(&'static str, &str)]| a.check(&Method::POST, &headers(h), None).is_ok();
        assert!(ok(&[host]), "a command-line client sends no Origin");
        assert!(ok(&[host, ("origin", "http://127.0.0.1:8787"), ("sec-fetch-site", "same-origin")]));
        assert!(!ok(&[host, ("origin", "http://evil.example.com")]));
        assert!(!ok(&[host, ("origin", "null")]));
        assert!(!ok(&[host, ("origin", "http://127.0.0.1:9999")]));
        assert!(!ok(&[host, ("sec-fetch-site", "cross-site")]));
        // Reading is not changing: a cross-site GET gets through to the browser's same-origin policy.
        assert!(
            a.check(&Method::GET, &headers(&[host, ("origin", "http://evil.example.com")]), None).is_ok()
        );
    }

    #[test]
    fn a_required_token_comes_in_the_url_a_cookie_or_a_header() {
        let a = Access::new("127.0.0.1:8787".parse().unwrap(), Some("abc123".into()));
        let host = ("host", "127.0.0.1:8787");
        let check = |h: &[(&'static str, &str)], q| a.check(&Method::GET, &headers(h), q);
        assert_eq!(check(&[host], Some("token=abc123")), Ok(Pass::FromUrl));
        assert_eq!(check(&[host], Some("frame=2&token=abc123")), Ok(Pass::FromUrl));
        assert_eq!(check(&[host, ("cookie", "x=1; impasto-token-8787=abc123")], None), Ok(Pass::Plain));
        assert_eq!(check(&[host, ("authorization", "token abc123")], None), Ok(Pass::Plain));
        for (h, q) in [
            (vec![host], None),
            (vec![host], Some("token=abc124")),
            (vec![host, ("cookie", "impasto-token-9999=abc123")], None),
            (vec![host, ("cookie", "impasto-token-8787=abc12")], None),
            (vec![host, ("authorization", "token nope")], None),
        ] {
            assert_eq!(check(&h, q).unwrap_err().status, StatusCode::UNAUTHORIZED, "{h:?} {q:?}");
        }
        assert!(same_secret("abc", "abc") && !same_secret("abd", "abc") && !same_secret("ab", "abc"));
        let t = new_token();
        assert_eq!(t.len(), 32);
        assert_ne!(t, new_token());
    }
}
