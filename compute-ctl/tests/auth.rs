//! JWT authentication of the external API (EdDSA keys from compute_ctl_config.jwks).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn key_pair() -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    SigningKey::from_bytes(&seed)
}

fn jwk(key: &SigningKey) -> Value {
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "kid": "test"})
}

fn token(key: &SigningKey, claims: Value) -> String {
    let der = key.to_pkcs8_der().unwrap();
    let encoding = EncodingKey::from_ed_der(der.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &encoding).unwrap()
}

fn in_an_hour() -> u64 {
    (SystemTime::now() + Duration::from_secs(3600))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn status_with(compute: &Compute, token: Option<&str>) -> Answer {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|value| vec![("Authorization", value)])
        .unwrap_or_default();
    compute.request("GET", "/status", &headers, b"")
}

#[test]
fn jwt_cases() {
    let key = key_pair();
    let other = key_pair();
    let mut harness = Harness::new();
    let config =
        json!({"spec": empty_spec(None), "compute_ctl_config": {"jwks": {"keys": [jwk(&key)]}}});
    let config_path = harness.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let config_path = config_path.to_string_lossy().to_string();
    let mut compute = harness.start(&["-c", &config_path, "-i", "compute-1"]);

    // Probes and metrics need no token.
    assert_eq!(compute.get("/healthz").status, 200);
    assert_eq!(compute.get("/metrics").status, 200);
    // Missing or malformed.
    assert_eq!(status_with(&compute, None).status, 400);
    assert_eq!(status_with(&compute, Some("not-a-jwt")).status, 400);
    let basic = compute.request("GET", "/status", &[("Authorization", "Basic eDp5")], b"");
    assert_eq!(basic.status, 400);
    assert_eq!(basic.json()["error"], "invalid authorization token");

    let exp = in_an_hour();
    let ours = token(&key, json!({"compute_id": "compute-1", "exp": exp}));
    let answer = status_with(&compute, Some(&ours));
    assert_eq!(answer.status, 200, "{}", answer.body);

    let forged = token(&other, json!({"compute_id": "compute-1", "exp": exp}));
    assert_eq!(status_with(&compute, Some(&forged)).status, 401);
    let expired = token(&key, json!({"compute_id": "compute-1", "exp": exp - 7200}));
    assert_eq!(status_with(&compute, Some(&expired)).status, 401);
    let elsewhere = token(&key, json!({"compute_id": "compute-2", "exp": exp}));
    assert_eq!(status_with(&compute, Some(&elsewhere)).status, 403);
    let anonymous = token(&key, json!({"exp": exp}));
    assert_eq!(status_with(&compute, Some(&anonymous)).status, 403);

    let admin = token(
        &key,
        json!({"scope": "compute_ctl:admin", "aud": ["compute"], "exp": exp}),
    );
    assert_eq!(status_with(&compute, Some(&admin)).status, 200);
    let admin_no_aud = token(&key, json!({"scope": "compute_ctl:admin", "exp": exp}));
    assert_eq!(status_with(&compute, Some(&admin_no_aud)).status, 401);

    // The internal port needs no token.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while http(harness.internal_port, "GET", "/status", &[], b"").json()["status"] != "running" {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Routes other than /status are protected too.
    assert_eq!(compute.post("/terminate", b"").status, 400);
    let bearer = format!("Bearer {admin}");
    let terminated = compute.request("POST", "/terminate", &[("Authorization", &bearer)], b"");
    assert_eq!(terminated.status, 200);
    assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
}
