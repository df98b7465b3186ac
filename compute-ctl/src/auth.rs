//! JWT authentication of the external API, as upstream: when `compute_ctl_config.jwks`
//! holds keys, a request needs `Authorization: Bearer <JWT>` signed (EdDSA, Ed25519 OKP keys)
//! by one of them with `exp` in the future. Scope `compute_ctl:admin` needs an audience
//! containing `compute`; any other token needs `compute_id` equal to `-i`.
//! 400 missing or malformed, 401 bad signature, expired or bad audience, 403 wrong compute.
//! The token is never logged.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::http::{ApiRequest, Reply};

/// The scope that grants access to any compute.
pub const ADMIN_SCOPE: &str = "compute_ctl:admin";

/// The audience an admin token must carry.
pub const COMPUTE_AUDIENCE: &str = "compute";

/// The claims upstream reads.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    compute_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

/// `aud` as one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(one) => one == wanted,
            Audience::Many(many) => many.iter().any(|aud| aud == wanted),
        }
    }
}

/// Checks the request's token against `keys`; no keys means no authentication.
pub fn check(keys: &[Value], compute_id: Option<&str>, request: &ApiRequest) -> Result<(), Reply> {
    if keys.is_empty() {
        return Ok(());
    }
    let token = request
        .authorization
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| token.split('.').count() == 3)
        .ok_or_else(|| Reply::error(400, "invalid authorization token"))?;
    let claims = verify(keys, token)?;
    authorize(&claims, compute_id)
}

fn verify(keys: &[Value], token: &str) -> Result<Claims, Reply> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| Reply::error(400, "invalid authorization token"))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_aud = false;
    validation.validate_nbf = false;
    validation.validate_exp = true;
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    let mut last_error = "no usable key in compute_ctl_config.jwks".to_string();
    for key in keys {
        let decoding = serde_json::from_value::<Jwk>(key.clone())
            .map_err(|error| error.to_string())
            .and_then(|jwk| DecodingKey::from_jwk(&jwk).map_err(|error| error.to_string()));
        let decoding = match decoding {
            Ok(decoding) => decoding,
            Err(error) => {
                tracing::warn!(%error, "skipping a JWK that cannot be used");
                continue;
            }
        };
        if header.alg != Algorithm::EdDSA {
            last_error = format!(
                "algorithm {:?} is not accepted; sign with EdDSA",
                header.alg
            );
            continue;
        }
        match jsonwebtoken::decode::<Claims>(token, &decoding, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(error) => last_error = error.to_string(),
        }
    }
    Err(Reply::error(
        401,
        format!("invalid authorization token: {last_error}"),
    ))
}

fn authorize(claims: &Claims, compute_id: Option<&str>) -> Result<(), Reply> {
    if claims.scope.as_deref() == Some(ADMIN_SCOPE) {
        let audience_ok = claims
            .aud
            .as_ref()
            .is_some_and(|aud| aud.contains(COMPUTE_AUDIENCE));
        if !audience_ok {
            return Err(Reply::error(
                401,
                "invalid authorization token: an admin token needs audience \"compute\"",
            ));
        }
        return Ok(());
    }
    match (claims.compute_id.as_deref(), compute_id) {
        (Some(claimed), Some(ours)) if claimed == ours => Ok(()),
        (None, _) => Err(Reply::error(403, "the token has no compute_id claim")),
        _ => Err(Reply::error(403, "the token is for another compute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(text: &str) -> Claims {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn authorization_rules() {
        let admin = claims(r#"{"scope": "compute_ctl:admin", "aud": ["compute"]}"#);
        assert!(authorize(&admin, Some("c1")).is_ok());
        let admin_no_aud = claims(r#"{"scope": "compute_ctl:admin"}"#);
        assert_eq!(
            authorize(&admin_no_aud, Some("c1")).unwrap_err().status,
            401
        );
        let ours = claims(r#"{"compute_id": "c1"}"#);
        assert!(authorize(&ours, Some("c1")).is_ok());
        assert_eq!(authorize(&ours, Some("c2")).unwrap_err().status, 403);
        assert_eq!(authorize(&ours, None).unwrap_err().status, 403);
    }
}
