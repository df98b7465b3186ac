//! JWT authentication of the external API, as upstream (`neon-compute-ctl-2.md` §2.3), with
//! one rule upstream lacks: the key set is loaded **once**, when the HTTP servers start, and
//! nothing at run time can replace it (`/configure` and `/refresh_configuration` ignore
//! `compute_ctl_config.jwks`; `INSTANCE_ID` changes nothing).
//!
//! * [`Auth::Keys`]: every authenticated route needs `Authorization: Bearer <JWT>` verified
//!   by one of the keys — an empty key set verifies nothing, so every such route answers 401.
//! * [`Auth::Open`]: no `compute_ctl_config.jwks` was given at all — our development mode;
//!   the caller binds loopback only (see `compute::Controller::ensure_http`).
//!
//! Each key verifies the tokens of its own family: an Ed25519 (`OKP`) key EdDSA tokens, an
//! RSA key RS256 tokens, so a set may mix both (upstream picks one algorithm for the whole
//! set — RS256 as soon as one key says `"alg": "RS256"` — and then refuses every token of
//! the set's Ed25519 keys). An RSA key whose `alg` names another algorithm is refused when
//! the set is loaded, as is a key without `kid`, a symmetric (`oct`) key or an unusable one. Claims: `compute_id`, `scope` (only `compute_ctl:admin`), `aud` (a list of
//! strings); `exp` is checked with 60 s of leeway when present. Tokens are never logged.

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use hyper::StatusCode;

/// The scope that grants access to any compute.
pub const ADMIN_SCOPE: &str = "compute_ctl:admin";

/// The audience an admin token must carry.
pub const COMPUTE_AUDIENCE: &str = "compute";

/// Seconds of clock skew allowed on `exp`, as upstream.
pub const LEEWAY_SECONDS: u64 = 60;

/// How the external API authenticates, fixed for the life of the process.
#[derive(Clone)]
pub enum Auth {
    /// No key set was configured: no authentication (loopback only).
    Open,
    /// A key set was configured (possibly empty, which denies every authenticated route).
    Keys(KeySet),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Open => f.write_str("Auth::Open"),
            Auth::Keys(set) => {
                let algorithms: Vec<Algorithm> = set.keys.iter().map(|key| key.1).collect();
                write!(f, "Auth::Keys({} keys, {algorithms:?})", set.keys.len())
            }
        }
    }
}

impl Auth {
    /// The authentication for `jwks` as given at start (`None`: none was given).
    pub fn load(jwks: Option<&[Value]>) -> Result<Auth, String> {
        match jwks {
            None => Ok(Auth::Open),
            Some(keys) => KeySet::load(keys).map(Auth::Keys),
        }
    }

    /// Whether requests are checked at all.
    pub fn is_open(&self) -> bool {
        matches!(self, Auth::Open)
    }

    /// Checks a request's `Authorization` header; `compute_id` is `-i`.
    pub fn check(
        &self,
        authorization: Option<&str>,
        compute_id: Option<&str>,
    ) -> Result<(), Refused> {
        let Auth::Keys(set) = self else {
            return Ok(());
        };
        let token = bearer(authorization).ok_or(Refused::Malformed)?;
        let claims = set.verify(token)?;
        authorize(&claims, compute_id)
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(header: Option<&str>) -> Option<&str> {
    let header = header?;
    let (scheme, token) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// The verified keys: each with its `kid` and the one algorithm it verifies.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<(String, Algorithm, DecodingKey)>,
}

impl KeySet {
    /// Loads `compute_ctl_config.jwks.keys`; the error names the key (its JSON path).
    pub fn load(keys: &[Value]) -> Result<KeySet, String> {
        let mut parsed = Vec::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            let path = format!("compute_ctl_config.jwks.keys[{index}]");
            let jwk: Jwk = serde_json::from_value(key.clone())
                .map_err(|error| format!("{path}: not a usable JWK: {error}"))?;
            let kid = jwk
                .common
                .key_id
                .clone()
                .filter(|kid| !kid.is_empty())
                .ok_or_else(|| format!("{path}: the key has no \"kid\"; give every key an id"))?;
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::OctetKeyPair(_), _) => Algorithm::EdDSA,
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::RSA(_), Some(other)) => {
                    return Err(format!(
                        "{path}: an RSA key must be for RS256, not {other:?}; \
                         drop its \"alg\" or set it to \"RS256\""
                    ))
                }
                _ => {
                    return Err(format!(
                        "{path}: only Ed25519 (kty OKP) and RSA keys are accepted"
                    ))
                }
            };
            let decoding = DecodingKey::from_jwk(&jwk)
                .map_err(|error| format!("{path}: not a usable key: {error}"))?;
            parsed.push((kid, algorithm, decoding));
        }
        Ok(KeySet { keys: parsed })
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key (then nothing verifies).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The claims of `token` when one key verifies it; each key only checks tokens of its
    /// own algorithm (the token's header must name it).
    fn verify(&self, token: &str) -> Result<Claims, Refused> {
        for (kid, algorithm, key) in &self.keys {
            let mut validation = Validation::new(*algorithm);
            validation.validate_aud = false;
            validation.validate_nbf = false;
            validation.validate_exp = true;
            validation.required_spec_claims.clear();
            validation.leeway = LEEWAY_SECONDS;
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(error) => {
                    tracing::debug!(kid = %kid, error = %error, "a key did not verify the token");
                }
            }
        }
        Err(Refused::Unverified)
    }
}

/// The claims upstream reads; anything else in `scope` or a non-list `aud` fails to decode.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    compute_id: Option<String>,
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    aud: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
enum Scope {
    #[serde(rename = "compute_ctl:admin")]
    Admin,
}

fn authorize(claims: &Claims, compute_id: Option<&str>) -> Result<(), Refused> {
    if claims.scope == Some(Scope::Admin) {
        return match &claims.aud {
            None => Err(Refused::MissingAudience),
            Some(aud) if aud.iter().any(|aud| aud == COMPUTE_AUDIENCE) => Ok(()),
            Some(_) => Err(Refused::WrongAudience),
        };
    }
    match (claims.compute_id.as_deref(), compute_id) {
        (None, _) => Err(Refused::MissingComputeId),
        (Some(claimed), Some(ours)) if claimed == ours => Ok(()),
        _ => Err(Refused::WrongComputeId),
    }
}

/// Why a request's token was refused; its text is upstream's `{"error"}` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No `Authorization: Bearer <token>` header (400).
    #[error("invalid authorization token")]
    Malformed,
    /// No key verifies the token, or it expired (401).
    #[error("failed to verify authorization token")]
    Unverified,
    /// An admin token without `aud` (401).
    #[error("missing audience in authorization token claims")]
    MissingAudience,
    /// An admin token for another audience (401).
    #[error("invalid audience in authorization token claims")]
    WrongAudience,
    /// A token without `compute_id` (403).
    #[error("missing compute_id in authorization token claims")]
    MissingComputeId,
    /// A token for another compute (403).
    #[error("invalid compute ID in authorization token claims")]
    WrongComputeId,
}

impl Refused {
    /// The status upstream answers it with.
    pub fn status(self) -> StatusCode {
        match self {
            Refused::Malformed => StatusCode::BAD_REQUEST,
            Refused::Unverified | Refused::MissingAudience | Refused::WrongAudience => {
                StatusCode::UNAUTHORIZED
            }
            Refused::MissingComputeId | Refused::WrongComputeId => StatusCode::FORBIDDEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(text: &str) -> Claims {
        serde_json::from_str(text).unwrap()
    }

    fn message(refused: Refused) -> (u16, String) {
        (refused.status().as_u16(), refused.to_string())
    }

    #[test]
    fn authorization_rules() {
        let admin = claims(r#"{"scope": "compute_ctl:admin", "aud": ["compute"]}"#);
        assert!(authorize(&admin, Some("c1")).is_ok());
        let admin_no_aud = claims(r#"{"scope": "compute_ctl:admin"}"#);
        assert_eq!(
            message(authorize(&admin_no_aud, Some("c1")).unwrap_err()),
            (401, "missing audience in authorization token claims".into())
        );
        let admin_other = claims(r#"{"scope": "compute_ctl:admin", "aud": ["other"]}"#);
        assert_eq!(
            message(authorize(&admin_other, Some("c1")).unwrap_err()),
            (401, "invalid audience in authorization token claims".into())
        );
        let ours = claims(r#"{"compute_id": "c1"}"#);
        assert!(authorize(&ours, Some("c1")).is_ok());
        assert_eq!(
            message(authorize(&ours, Some("c2")).unwrap_err()),
            (
                403,
                "invalid compute ID in authorization token claims".into()
            )
        );
        assert_eq!(authorize(&ours, None).unwrap_err().status(), 403);
        assert_eq!(
            message(authorize(&claims("{}"), Some("c1")).unwrap_err()),
            (
                403,
                "missing compute_id in authorization token claims".into()
            )
        );
        // A bare-string audience and an unknown scope do not decode (401 upstream).
        assert!(serde_json::from_str::<Claims>(r#"{"aud": "compute"}"#).is_err());
        assert!(serde_json::from_str::<Claims>(r#"{"scope": "other"}"#).is_err());
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn key_sets_are_checked_when_loaded() {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let good = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"});
        assert_eq!(KeySet::load(std::slice::from_ref(&good)).unwrap().len(), 1);
        let no_kid = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x});
        let error = KeySet::load(&[good.clone(), no_kid]).err().unwrap();
        assert!(
            error.starts_with("compute_ctl_config.jwks.keys[1]: "),
            "{error}"
        );
        assert!(error.contains("kid"), "{error}");
        let rs512 =
            serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS512", "kid": "r"});
        let error = KeySet::load(&[good.clone(), rs512]).err().unwrap();
        assert!(
            error.starts_with("compute_ctl_config.jwks.keys[1]: ") && error.contains("RS256"),
            "{error}"
        );
        let symmetric = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "s"});
        assert!(KeySet::load(&[symmetric]).is_err());
        assert!(KeySet::load(&[serde_json::json!({"kid": "x"})]).is_err());
        let empty = Auth::load(Some(&[])).unwrap();
        assert_eq!(
            message(empty.check(Some("Bearer a.b.c"), Some("c1")).unwrap_err()),
            (401, "failed to verify authorization token".into())
        );
        assert!(Auth::load(None).unwrap().check(None, None).is_ok());
    }
}
