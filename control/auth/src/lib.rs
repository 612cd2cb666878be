//! Request signatures for the Switchyard management API.
//!
//! App servers authenticate every REST request with a service id and the service's
//! secret key. Two schemes are understood, both HMAC-SHA256 over the key:
//!
//! - **OWT `MAuth`**, exactly as OWT's REST client libraries send it, so OWT apps work
//!   unchanged: `Authorization: MAuth realm=…,mauth_signature_method=HMAC_SHA256,
//!   mauth_serviceid=…,mauth_cnonce=…,mauth_timestamp=…,mauth_signature=…`, where the
//!   signature is base64 of the *hex* HMAC over `timestamp,cnonce` (followed by
//!   `,username,role` when both are sent). It does not cover the method, path or body.
//! - **`SY-HMAC-SHA256`**, Switchyard's own: `Authorization: SY-HMAC-SHA256
//!   service=…,timestamp=…,nonce=…,signature=…`, where the signature is base64 of the raw
//!   HMAC over `SY-HMAC-SHA256\n{timestamp}\n{nonce}\n{METHOD}\n{path?query}\n{hex sha256(body)}`.
//!   A captured request cannot be replayed against another path or with another body.
//!
//! Both are checked the same way, and more strictly than OWT did: signatures are compared
//! in constant time; a timestamp further than the window (5 minutes by default) from the
//! server's clock is refused; and each `(service, timestamp, nonce)` is accepted once within
//! the window ([`ReplayGuard`]), so a replayed header gets a 401. There are no random
//! sleeps.
//!
//! This crate is sans-IO: callers pass the current time in milliseconds since the Unix
//! epoch. Servers use [`Credentials::parse`], [`Credentials::verify`] and [`ReplayGuard`];
//! clients (the admin CLI, the benchmarks, tests) use [`Signer`].

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::hash::{BuildHasher, Hasher};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The name of Switchyard's own scheme, as it appears in the `Authorization` header.
pub const SY_SCHEME: &str = "SY-HMAC-SHA256";

/// Why a request's credentials were refused. Every variant answers 401 except where noted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request has no `Authorization` header.
    #[error("missing Authorization header: sign the request with MAuth or SY-HMAC-SHA256")]
    Missing,
    /// The header is not one of the two schemes or lacks a field.
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    /// The MAuth signature method is not HMAC_SHA256.
    #[error("unsupported mauth_signature_method {0:?}: only HMAC_SHA256 is accepted")]
    UnsupportedMethod(String),
    /// The OWT MAuth scheme is switched off in the configuration.
    #[error("the OWT MAuth scheme is disabled on this server: sign with SY-HMAC-SHA256")]
    SchemeDisabled,
    /// No service has that id.
    #[error("unknown service")]
    UnknownService,
    /// The signature does not match the service key.
    #[error("signature mismatch: check the service id and key")]
    BadSignature,
    /// The timestamp is too far from the server's clock.
    #[error("stale timestamp: {skew_s} s from the server's clock, more than the {window_s} s allowed; check the client's clock")]
    Stale {
        /// How far off the timestamp is, in seconds (signed: negative is in the past).
        skew_s: i64,
        /// The window allowed, in seconds.
        window_s: i64,
    },
    /// This exact timestamp and nonce were already accepted.
    #[error(
        "replayed request: this timestamp and nonce were already used; sign each request afresh"
    )]
    Replayed,
    /// The replay cache is full (answers 503): too many signed requests in one window.
    #[error("too many signed requests in the replay window; retry shortly")]
    Overloaded,
}

/// Which scheme a request was signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// OWT's `MAuth`.
    OwtMauth,
    /// `SY-HMAC-SHA256`.
    SyHmac,
}

/// The parts of a request that `SY-HMAC-SHA256` covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The path with its query, e.g. `/v1/rooms?page=2`.
    pub path_and_query: &'a str,
    /// The exact body bytes.
    pub body: &'a [u8],
}

/// The fields of a parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The scheme used.
    pub scheme: Scheme,
    /// The service id.
    pub service_id: String,
    /// Milliseconds since the Unix epoch, as signed.
    pub timestamp_ms: i64,
    /// The client's nonce (`mauth_cnonce`), as signed.
    pub nonce: String,
    /// The signature, base64, as sent.
    pub signature: String,
    /// OWT's optional `mauth_username` (base64, as sent) and `mauth_role`.
    pub user_role: Option<(String, String)>,
}

impl Credentials {
    /// Parses an `Authorization` header value of either scheme.
    pub fn parse(header: &str) -> Result<Credentials, AuthError> {
        let header = header.trim();
        if let Some(rest) = strip_prefix_ci(header, "MAuth") {
            parse_mauth(rest)
        } else if let Some(rest) = strip_prefix_ci(header, SY_SCHEME) {
            parse_sy(rest)
        } else {
            Err(AuthError::Malformed(
                "expected the MAuth or SY-HMAC-SHA256 scheme".into(),
            ))
        }
    }

    /// Checks the signature against the service key, in constant time.
    pub fn verify(&self, key: &str, request: RequestParts<'_>) -> Result<(), AuthError> {
        let expected = match self.scheme {
            Scheme::OwtMauth => mauth_signature(
                key,
                self.timestamp_ms,
                &self.nonce,
                self.user_role
                    .as_ref()
                    .map(|(u, r)| (u.as_str(), r.as_str())),
            ),
            Scheme::SyHmac => sy_signature(key, self.timestamp_ms, &self.nonce, request),
        };
        if bool::from(expected.as_bytes().ct_eq(self.signature.as_bytes())) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }

    /// The user name OWT's optional `mauth_username` carries, decoded from base64.
    pub fn user(&self) -> Option<String> {
        let (u, _) = self.user_role.as_ref()?;
        B64.decode(u).ok().and_then(|b| String::from_utf8(b).ok())
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    let rest = &s[prefix.len()..];
    if head.eq_ignore_ascii_case(prefix)
        && (rest.is_empty() || rest.starts_with(char::is_whitespace))
    {
        Some(rest)
    } else {
        None
    }
}

/// Splits `k=v,k="v", …` into pairs; values may be quoted; base64 `=` padding is kept.
fn fields(s: &str) -> Result<Vec<(String, String)>, AuthError> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| AuthError::Malformed(format!("field {part:?} has no '='")))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        out.push((k.trim().to_ascii_lowercase(), v.to_string()));
    }
    Ok(out)
}

fn parse_timestamp(v: &str) -> Result<i64, AuthError> {
    v.parse::<i64>().map_err(|_| {
        AuthError::Malformed(format!(
            "timestamp {v:?} is not milliseconds since the Unix epoch"
        ))
    })
}

fn parse_mauth(rest: &str) -> Result<Credentials, AuthError> {
    let mut method = None;
    let (mut service, mut nonce, mut ts, mut sig, mut user, mut role) =
        (None, None, None, None, None, None);
    for (k, v) in fields(rest)? {
        match k.as_str() {
            "realm" => {}
            "mauth_signature_method" => method = Some(v),
            "mauth_serviceid" => service = Some(v),
            "mauth_cnonce" => nonce = Some(v),
            "mauth_timestamp" => ts = Some(v),
            "mauth_signature" => sig = Some(v),
            "mauth_username" => user = Some(v),
            "mauth_role" => role = Some(v),
            _ => {}
        }
    }
    let need = |v: Option<String>, name: &str| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::Malformed(format!("{name} is missing")))
    };
    let method = need(method, "mauth_signature_method")?;
    if method != "HMAC_SHA256" {
        return Err(AuthError::UnsupportedMethod(method));
    }
    Ok(Credentials {
        scheme: Scheme::OwtMauth,
        service_id: need(service, "mauth_serviceid")?,
        timestamp_ms: parse_timestamp(&need(ts, "mauth_timestamp")?)?,
        nonce: need(nonce, "mauth_cnonce")?,
        signature: need(sig, "mauth_signature")?,
        user_role: user.zip(role),
    })
}

fn parse_sy(rest: &str) -> Result<Credentials, AuthError> {
    let (mut service, mut nonce, mut ts, mut sig) = (None, None, None, None);
    for (k, v) in fields(rest)? {
        match k.as_str() {
            "service" => service = Some(v),
            "nonce" => nonce = Some(v),
            "timestamp" => ts = Some(v),
            "signature" => sig = Some(v),
            other => {
                return Err(AuthError::Malformed(format!(
                    "unknown field {other:?} in {SY_SCHEME}"
                )))
            }
        }
    }
    let need = |v: Option<String>, name: &str| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::Malformed(format!("{name} is missing")))
    };
    let nonce = need(nonce, "nonce")?;
    if nonce.len() < 8 || nonce.len() > 128 {
        return Err(AuthError::Malformed(
            "nonce must be 8 to 128 characters".into(),
        ));
    }
    Ok(Credentials {
        scheme: Scheme::SyHmac,
        service_id: need(service, "service")?,
        timestamp_ms: parse_timestamp(&need(ts, "timestamp")?)?,
        nonce,
        signature: need(sig, "signature")?,
        user_role: None,
    })
}

fn hmac(key: &str, data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// OWT's MAuth signature: base64 of the lowercase hex HMAC-SHA256 of
/// `timestamp,cnonce[,username,role]`.
pub fn mauth_signature(
    key: &str,
    timestamp_ms: i64,
    cnonce: &str,
    user_role: Option<(&str, &str)>,
) -> String {
    let mut to_sign = format!("{timestamp_ms},{cnonce}");
    if let Some((u, r)) = user_role {
        to_sign.push_str(&format!(",{u},{r}"));
    }
    B64.encode(hex::encode(hmac(key, to_sign.as_bytes())))
}

/// The `SY-HMAC-SHA256` signature of a request.
pub fn sy_signature(key: &str, timestamp_ms: i64, nonce: &str, req: RequestParts<'_>) -> String {
    let body_hash = hex::encode(Sha256::digest(req.body));
    let to_sign = format!(
        "{SY_SCHEME}\n{timestamp_ms}\n{nonce}\n{}\n{}\n{body_hash}",
        req.method.to_ascii_uppercase(),
        req.path_and_query
    );
    B64.encode(hmac(key, to_sign.as_bytes()))
}

/// Signs requests as a client: a fresh timestamp and nonce for every call.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The service id.
    pub service_id: String,
    /// The service key.
    pub key: String,
    /// Which scheme to sign with.
    pub scheme: Scheme,
}

impl Signer {
    /// A signer for `service_id` with `key`.
    pub fn new(service_id: impl Into<String>, key: impl Into<String>, scheme: Scheme) -> Self {
        Signer {
            service_id: service_id.into(),
            key: key.into(),
            scheme,
        }
    }

    /// The `Authorization` header value for one request, at `now_ms`.
    pub fn authorization(&self, now_ms: i64, request: RequestParts<'_>) -> String {
        let nonce = random_nonce();
        self.authorization_with(now_ms, &nonce, request)
    }

    /// The header with a given nonce (tests use this to replay).
    pub fn authorization_with(
        &self,
        now_ms: i64,
        nonce: &str,
        request: RequestParts<'_>,
    ) -> String {
        match self.scheme {
            Scheme::OwtMauth => format!(
                "MAuth realm=http://webrtc.intel.com,mauth_signature_method=HMAC_SHA256,mauth_serviceid={},mauth_cnonce={nonce},mauth_timestamp={now_ms},mauth_signature={}",
                self.service_id,
                mauth_signature(&self.key, now_ms, nonce, None)
            ),
            Scheme::SyHmac => format!(
                "{SY_SCHEME} service={},timestamp={now_ms},nonce={nonce},signature={}",
                self.service_id,
                sy_signature(&self.key, now_ms, nonce, request)
            ),
        }
    }
}

/// 16 random hex characters.
pub fn random_nonce() -> String {
    let bytes: [u8; 8] = rand::random();
    hex::encode(bytes)
}

/// Refuses stale timestamps and replays of `(service, timestamp, nonce)` within the window.
///
/// Keyed on the timestamp as well as the nonce: OWT's clients draw `cnonce` from 0..99999,
/// so two honest requests of one service often share a nonce within five minutes, but never
/// a signed (timestamp, nonce) pair unless one is a replay. Entries are kept until their
/// timestamp leaves the window, as 64-bit keyed hashes (about 32 bytes each), up to
/// `max_entries`; past that new requests get [`AuthError::Overloaded`] rather than
/// letting memory grow.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: i64,
    max_entries: usize,
    seen: HashSet<u64>,
    expiry: BinaryHeap<Reverse<(i64, u64)>>,
    hasher: std::collections::hash_map::RandomState,
}

impl ReplayGuard {
    /// A guard with a window of `window_ms` either side of the server's clock.
    pub fn new(window_ms: i64, max_entries: usize) -> Self {
        ReplayGuard {
            window_ms,
            max_entries,
            seen: HashSet::new(),
            expiry: BinaryHeap::new(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Checks freshness, then records the request; call only after the signature verified,
    /// so that unauthenticated requests cannot fill the cache.
    pub fn check(&mut self, creds: &Credentials, now_ms: i64) -> Result<(), AuthError> {
        let skew = creds.timestamp_ms.saturating_sub(now_ms);
        if skew.abs() > self.window_ms {
            return Err(AuthError::Stale {
                skew_s: skew / 1000,
                window_s: self.window_ms / 1000,
            });
        }
        self.prune(now_ms);
        let mut h = self.hasher.build_hasher();
        h.write(creds.service_id.as_bytes());
        h.write_u8(0);
        h.write_i64(creds.timestamp_ms);
        h.write(creds.nonce.as_bytes());
        let key = h.finish();
        if self.seen.contains(&key) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.max_entries {
            return Err(AuthError::Overloaded);
        }
        self.seen.insert(key);
        self.expiry.push(Reverse((
            creds.timestamp_ms.saturating_add(self.window_ms),
            key,
        )));
        Ok(())
    }

    fn prune(&mut self, now_ms: i64) {
        while let Some(Reverse((exp, key))) = self.expiry.peek().copied() {
            if exp >= now_ms {
                break;
            }
            self.expiry.pop();
            self.seen.remove(&key);
        }
    }

    /// How many requests are remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: RequestParts<'static> = RequestParts {
        method: "POST",
        path_and_query: "/v1/rooms",
        body: b"{\"name\":\"a\"}",
    };

    /// OWT's construction, computed independently with Python's hmac module:
    /// `base64(hmac.new(b"key", b"1406079112038,87428", sha256).hexdigest())`.
    #[test]
    fn mauth_matches_owt_construction() {
        assert_eq!(
            mauth_signature("key", 1406079112038, "87428", None),
            "MGJkZDRkZDRhYjUzMWQxNjljMGNhNWJkNWVkNzdiNWU5MWJlMjhhY2IxZGM0ZWNjMDVmMTA0Mzk1ODZmNjQ3Mg=="
        );
    }

    #[test]
    fn parses_header_as_owt_clients_send_it() {
        // Node's restClient.js sends the realm unquoted and a hex cnonce.
        let sig = mauth_signature("k", 1700000000000, "a1b2c3", None);
        let h = format!("MAuth realm=http://marte3.dit.upm.es,mauth_signature_method=HMAC_SHA256,mauth_serviceid=5f1e,mauth_cnonce=a1b2c3,mauth_timestamp=1700000000000,mauth_signature={sig}");
        let c = Credentials::parse(&h).unwrap();
        assert_eq!(c.scheme, Scheme::OwtMauth);
        assert_eq!(c.service_id, "5f1e");
        assert_eq!(c.signature, sig);
        c.verify("k", REQ).unwrap();
        assert_eq!(c.verify("other", REQ), Err(AuthError::BadSignature));
    }

    #[test]
    fn parses_quoted_multiline_header_with_user_and_role() {
        let user = B64.encode("alice");
        let sig = mauth_signature("k", 1, "42", Some((&user, "presenter")));
        let h = format!("MAuth realm=\"http://webrtc.intel.com\",\n mauth_signature_method=\"HMAC_SHA256\",\n mauth_username=\"{user}\",\n mauth_role=\"presenter\",\n mauth_serviceid=\"s\",\n mauth_cnonce=\"42\",\n mauth_timestamp=\"1\",\n mauth_signature=\"{sig}\"");
        let c = Credentials::parse(&h).unwrap();
        c.verify("k", REQ).unwrap();
        assert_eq!(c.user().as_deref(), Some("alice"));
    }

    #[test]
    fn refuses_malformed_headers() {
        for h in [
            "",
            "Basic dXNlcjpwYXNz",
            "MAuth",
            "MAuth mauth_signature_method=HMAC_SHA256",
            "MAuth mauth_signature_method=HMAC_SHA256,mauth_serviceid=s,mauth_cnonce=1,mauth_timestamp=yesterday,mauth_signature=x",
            "MAuthx mauth_serviceid=s",
            "SY-HMAC-SHA256 service=s,timestamp=1,nonce=short,signature=x",
            "SY-HMAC-SHA256 service=s,timestamp=1,nonce=0123456789,signature=x,extra=1",
            "SY-HMAC-SHA256 garbage",
        ] {
            assert!(
                matches!(Credentials::parse(h), Err(AuthError::Malformed(_))),
                "{h:?} -> {:?}",
                Credentials::parse(h)
            );
        }
        let h = "MAuth mauth_signature_method=HMAC_SHA1,mauth_serviceid=s,mauth_cnonce=1,mauth_timestamp=1,mauth_signature=x";
        assert!(matches!(
            Credentials::parse(h),
            Err(AuthError::UnsupportedMethod(_))
        ));
    }

    #[test]
    fn sy_signature_covers_method_path_and_body() {
        let s = Signer::new("svc", "secret", Scheme::SyHmac);
        let h = s.authorization(1000, REQ);
        let c = Credentials::parse(&h).unwrap();
        c.verify("secret", REQ).unwrap();
        for other in [
            RequestParts {
                method: "PUT",
                ..REQ
            },
            RequestParts {
                path_and_query: "/v1/rooms/x",
                ..REQ
            },
            RequestParts {
                body: b"{\"name\":\"b\"}",
                ..REQ
            },
        ] {
            assert_eq!(c.verify("secret", other), Err(AuthError::BadSignature));
        }
    }

    #[test]
    fn signer_round_trips_mauth() {
        let s = Signer::new("svc", "secret", Scheme::OwtMauth);
        let c = Credentials::parse(&s.authorization(5, REQ)).unwrap();
        assert_eq!(c.timestamp_ms, 5);
        c.verify("secret", REQ).unwrap();
    }

    #[test]
    fn replay_guard_refuses_stale_and_replayed() {
        let s = Signer::new("svc", "k", Scheme::OwtMauth);
        let mut g = ReplayGuard::new(300_000, 10);
        let now = 10_000_000;
        let c = Credentials::parse(&s.authorization_with(now, "7", REQ)).unwrap();
        g.check(&c, now).unwrap();
        assert_eq!(g.check(&c, now + 1), Err(AuthError::Replayed));
        // Same nonce, another timestamp: an honest OWT client's collision, accepted.
        let c2 = Credentials::parse(&s.authorization_with(now + 1, "7", REQ)).unwrap();
        g.check(&c2, now + 1).unwrap();
        let old = Credentials::parse(&s.authorization_with(now - 300_001, "8", REQ)).unwrap();
        assert!(matches!(g.check(&old, now), Err(AuthError::Stale { .. })));
        let future = Credentials::parse(&s.authorization_with(now + 300_001, "9", REQ)).unwrap();
        assert!(matches!(
            g.check(&future, now),
            Err(AuthError::Stale { .. })
        ));
        // Once the first request's timestamp leaves the window, its replay is stale, not
        // remembered: the entry is pruned.
        assert!(matches!(
            g.check(&c, now + 300_002),
            Err(AuthError::Stale { .. })
        ));
        g.check(
            &Credentials::parse(&s.authorization_with(now + 600_000, "10", REQ)).unwrap(),
            now + 600_000,
        )
        .unwrap();
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn replay_guard_is_bounded() {
        let s = Signer::new("svc", "k", Scheme::OwtMauth);
        let mut g = ReplayGuard::new(1000, 3);
        for n in 0..3 {
            let c = Credentials::parse(&s.authorization_with(0, &n.to_string(), REQ)).unwrap();
            g.check(&c, 0).unwrap();
        }
        let c = Credentials::parse(&s.authorization_with(0, "x", REQ)).unwrap();
        assert_eq!(g.check(&c, 0), Err(AuthError::Overloaded));
        // After the window the old entries go and there is room again.
        let c = Credentials::parse(&s.authorization_with(1500, "x", REQ)).unwrap();
        g.check(&c, 1500).unwrap();
    }
}
