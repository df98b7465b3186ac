//! The JWTs the table sends: which `Authorization` a row carries, and the Ed25519 key set compute-ctl is started with.

use super::*;

/// The `Authorization` a row sends.
#[derive(Clone, Copy, Debug)]
pub enum Tok {
    /// No header.
    None,
    /// `compute_ctl:admin`, `aud: ["compute"]`.
    Admin,
    /// `compute_id: compute-1`, expiring in an hour.
    Ours,
    /// `compute_id: compute-2`.
    OtherCompute,
    /// Ours, expired 90 s ago (beyond the 60 s leeway).
    Expired,
    /// Ours, expired 30 s ago (within the leeway).
    JustExpired,
    /// Ours without `exp`.
    NoExp,
    /// Ours signed by a key outside the set.
    BadSignature,
    /// Ours signed with HS256 (the set is EdDSA).
    WrongAlgorithm,
    /// No `compute_id`, no scope.
    NoComputeId,
    /// Admin scope without `aud`.
    AdminNoAud,
    /// Admin scope, `aud: ["other"]`.
    AdminWrongAud,
    /// Admin scope, `aud: "compute"` (a bare string).
    AdminBareAud,
    /// Admin scope with another compute's id (admins may reach any compute).
    AdminOtherCompute,
    /// `scope: compute_ctl:other`.
    UnknownScope,
    /// `Bearer not-a-jwt`.
    Garbage,
    /// Ours with the scheme in lower case (`bearer <token>`).
    LowerCaseScheme,
    /// This exact header value.
    Raw(&'static str),
}

/// The key set and the tokens made from it.
pub struct Keys {
    pub ours: SigningKey,
    pub other: SigningKey,
}

impl Keys {
    pub fn new() -> Keys {
        Keys {
            ours: SigningKey::from_bytes(&[7u8; 32]),
            other: SigningKey::from_bytes(&[9u8; 32]),
        }
    }

    /// The JWK of our key, as upstream's control plane writes it.
    pub fn jwk(&self) -> Value {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.ours.verifying_key().as_bytes());
        json!({
            "kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig",
            "key_ops": ["verify"], "kid": "compat-key"
        })
    }

    pub fn sign(key: &SigningKey, claims: &Value) -> String {
        let der = key.to_pkcs8_der().expect("PKCS#8 of an Ed25519 key");
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &encoding)
            .expect("signing a token")
    }

    pub fn authorization(&self, tok: Tok) -> Option<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        let hour = now + 3600;
        let ours = |exp: Option<u64>| match exp {
            Some(exp) => json!({"compute_id": COMPUTE_ID, "exp": exp}),
            None => json!({"compute_id": COMPUTE_ID}),
        };
        let signed = |claims: Value| Keys::sign(&self.ours, &claims);
        let token = match tok {
            Tok::None => return None,
            Tok::Raw(value) => return Some(value.to_string()),
            Tok::Garbage => "not-a-jwt".to_string(),
            Tok::LowerCaseScheme => return Some(format!("bearer {}", signed(ours(Some(hour))))),
            Tok::Admin => {
                signed(json!({"scope": "compute_ctl:admin", "aud": ["compute"], "exp": hour}))
            }
            Tok::Ours => signed(ours(Some(hour))),
            Tok::OtherCompute => signed(json!({"compute_id": "compute-2", "exp": hour})),
            Tok::Expired => signed(ours(Some(now - 90))),
            Tok::JustExpired => signed(ours(Some(now - 30))),
            Tok::NoExp => signed(ours(None)),
            Tok::BadSignature => Keys::sign(&self.other, &ours(Some(hour))),
            Tok::WrongAlgorithm => jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &ours(Some(hour)),
                &EncodingKey::from_secret(b"compat-secret"),
            )
            .expect("signing an HS256 token"),
            Tok::NoComputeId => signed(json!({"exp": hour})),
            Tok::AdminNoAud => signed(json!({"scope": "compute_ctl:admin", "exp": hour})),
            Tok::AdminWrongAud => {
                signed(json!({"scope": "compute_ctl:admin", "aud": ["other"], "exp": hour}))
            }
            Tok::AdminBareAud => {
                signed(json!({"scope": "compute_ctl:admin", "aud": "compute", "exp": hour}))
            }
            Tok::AdminOtherCompute => signed(json!({
                "scope": "compute_ctl:admin", "aud": ["other", "compute"],
                "compute_id": "compute-2", "exp": hour
            })),
            Tok::UnknownScope => {
                signed(json!({"scope": "compute_ctl:other", "compute_id": COMPUTE_ID}))
            }
        };
        Some(format!("Bearer {token}"))
    }
}
