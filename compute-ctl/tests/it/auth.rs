//! JWT authentication of the external API (EdDSA keys from compute_ctl_config.jwks).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pg_test_support::probe::wait_for_status;
use pg_test_support::wait_for;
use serde_json::{json, Value};

pub(crate) fn key_pair() -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    SigningKey::from_bytes(&seed)
}

pub(crate) fn jwk(key: &SigningKey) -> Value {
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    json!({"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "kid": "test"})
}

pub(crate) fn token(key: &SigningKey, claims: Value) -> String {
    let der = key.to_pkcs8_der().unwrap();
    let encoding = EncodingKey::from_ed_der(der.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &encoding).unwrap()
}

pub(crate) fn in_an_hour() -> u64 {
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
    assert_eq!(status_with(&compute, Some("not-a-jwt")).status, 401);
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
    // 60 s of leeway, as upstream.
    let just_expired = token(
        &key,
        json!({"compute_id": "compute-1", "exp": exp - 3600 - 30}),
    );
    assert_eq!(status_with(&compute, Some(&just_expired)).status, 200);
    let no_exp = token(&key, json!({"compute_id": "compute-1"}));
    assert_eq!(status_with(&compute, Some(&no_exp)).status, 200);
    // A malformed `exp` is not a missing one (upstream lets it pass).
    let text_exp = token(&key, json!({"compute_id": "compute-1", "exp": "tomorrow"}));
    assert_eq!(status_with(&compute, Some(&text_exp)).status, 401);
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
    let answer = status_with(&compute, Some(&admin_no_aud));
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.json()["error"],
        "missing audience in authorization token claims"
    );
    let admin_bare_aud = token(
        &key,
        json!({"scope": "compute_ctl:admin", "aud": "compute"}),
    );
    assert_eq!(status_with(&compute, Some(&admin_bare_aud)).status, 401);
    let other_scope = token(
        &key,
        json!({"scope": "compute_ctl:other", "compute_id": "compute-1"}),
    );
    assert_eq!(status_with(&compute, Some(&other_scope)).status, 401);
    let answer = status_with(&compute, Some(&elsewhere));
    assert_eq!(
        answer.json()["error"],
        "invalid compute ID in authorization token claims"
    );

    // The internal port needs no token.
    wait_for_status(Duration::from_secs(20), "running", || {
        Some(http(harness.internal_port, "GET", "/status", &[], b"").json())
    })
    .unwrap_or_else(|last| panic!("never running: {last}"));
    // Routes other than /status are protected too.
    assert_eq!(compute.post("/terminate", b"").status, 400);
    let bearer = format!("Bearer {admin}");
    let terminated = compute.request("POST", "/terminate", &[("Authorization", &bearer)], b"");
    assert_eq!(terminated.status, 200);
    assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
}

/// `header.payload.` with the given header (no signature).
fn unsigned(header: Value, claims: Value) -> String {
    let encode = |value: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string().as_bytes())
    };
    format!("{}.{}.", encode(header), encode(claims))
}

/// An HS256 token whose secret is `secret`.
fn hs256(secret: &[u8], claims: Value) -> String {
    let encoding = EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &encoding).unwrap()
}

fn start_with_keys(harness: &mut Harness, keys: Value, extra: &[&str]) -> Compute {
    let config = json!({"spec": empty_spec(None), "compute_ctl_config": {"jwks": {"keys": keys}}});
    let config_path = harness.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let config_path = config_path.to_string_lossy().to_string();
    let mut args = vec!["-c", config_path.as_str(), "-i", "compute-1"];
    args.extend_from_slice(extra);
    harness.start(&args)
}

fn call(compute: &Compute, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Answer {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = bearer.as_deref() {
        headers.push(("Authorization", bearer));
    }
    compute.request(method, path, &headers, body)
}

/// The attack: an authenticated `/configure` carrying an empty key set (or none) must not
/// open the API; forged tokens (HS256 keyed with the public key, `alg: none`) never pass.
#[test]
fn configure_cannot_weaken_the_key_set() {
    let key = key_pair();
    let mut harness = Harness::new();
    // INSTANCE_ID disables auth upstream; here it changes nothing.
    harness.command.env("INSTANCE_ID", "instance-1");
    let compute = start_with_keys(&mut harness, json!([jwk(&key)]), &[]);
    let admin = token(
        &key,
        json!({"scope": "compute_ctl:admin", "aud": ["compute"], "exp": in_an_hour()}),
    );
    wait_for_status(Duration::from_secs(30), "running", || {
        Some(call(&compute, "GET", "/status", Some(&admin), b"").json())
    })
    .unwrap_or_else(|last| panic!("never running: {last}"));
    for config in [
        json!({"jwks": {"keys": []}}),
        json!({}),
        json!({"jwks": null}),
    ] {
        let body = json!({"spec": empty_spec(Some("mallory")), "compute_ctl_config": config});
        let answer = call(
            &compute,
            "POST",
            "/configure",
            Some(&admin),
            body.to_string().as_bytes(),
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        // Still closed to anyone without a token.
        assert_eq!(call(&compute, "GET", "/status", None, b"").status, 400);
        assert_eq!(call(&compute, "POST", "/terminate", None, b"").status, 400);
        assert_eq!(
            call(&compute, "GET", "/dbs_and_roles", None, b"").status,
            400
        );
        // And the old key still works.
        assert_eq!(
            call(&compute, "GET", "/status", Some(&admin), b"").status,
            200
        );
    }
    // compute_ctl_config omitted: refused as upstream (422), nothing changes.
    let body = json!({"spec": empty_spec(None)});
    let answer = call(
        &compute,
        "POST",
        "/configure",
        Some(&admin),
        body.to_string().as_bytes(),
    );
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(answer.json()["error"]
        .as_str()
        .unwrap()
        .contains("compute_ctl_config"));

    let claims =
        json!({"scope": "compute_ctl:admin", "aud": ["compute"], "compute_id": "compute-1"});
    let public = key.verifying_key().to_bytes();
    let public_b64 = jwk(&key)["x"].as_str().unwrap().to_string();
    let public_jwk = jwk(&key).to_string();
    for forged in [
        hs256(&public, claims.clone()),
        hs256(public_b64.as_bytes(), claims.clone()),
        hs256(public_jwk.as_bytes(), claims.clone()),
        unsigned(json!({"alg": "none", "typ": "JWT"}), claims.clone()),
        unsigned(json!({"alg": "none"}), claims.clone()),
        unsigned(json!({"alg": "EdDSA", "typ": "JWT"}), claims.clone()),
    ] {
        for (method, path) in [("GET", "/status"), ("POST", "/terminate")] {
            let answer = call(&compute, method, path, Some(&forged), b"");
            assert_eq!(
                answer.status, 401,
                "{method} {path} with {forged}: {}",
                answer.body
            );
            assert_eq!(
                answer.json()["error"],
                "failed to verify authorization token"
            );
        }
    }
    assert_eq!(compute.get("/metrics").status, 200);
}

/// An explicitly empty key set denies every authenticated route (401), as upstream.
#[test]
fn an_empty_key_set_denies_everything() {
    let key = key_pair();
    let mut harness = Harness::new();
    let compute = start_with_keys(&mut harness, json!([]), &[]);
    let admin = token(
        &key,
        json!({"scope": "compute_ctl:admin", "aud": ["compute"]}),
    );
    for (method, path) in [
        ("GET", "/status"),
        ("GET", "/metrics.json"),
        ("POST", "/terminate"),
        ("POST", "/configure"),
        ("GET", "/dbs_and_roles"),
        ("GET", "/insights"),
        ("POST", "/check_writability"),
    ] {
        let answer = call(&compute, method, path, Some(&admin), b"{}");
        assert_eq!(answer.status, 401, "{method} {path}: {}", answer.body);
        assert_eq!(call(&compute, method, path, None, b"{}").status, 400);
    }
    assert_eq!(compute.get("/metrics").status, 200);
    // The internal server (loopback) still tells the status.
    let internal = http(harness.internal_port, "GET", "/status", &[], b"");
    assert_eq!(internal.status, 200);
}

/// Runs a compute-ctl that must refuse to start; returns its stderr.
fn refused_start(command: &mut std::process::Command) -> String {
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(30), || child.try_wait().unwrap())
        .expect("compute-ctl kept running");
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    stderr
}

/// A key without `kid` is refused when the set is loaded (upstream panics per request):
/// compute-ctl never serves the API with it.
#[test]
fn a_key_without_kid_stops_the_start() {
    let key = key_pair();
    let mut no_kid = jwk(&key);
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut harness = Harness::new();
    let config =
        json!({"spec": empty_spec(None), "compute_ctl_config": {"jwks": {"keys": [no_kid]}}});
    let config_path = harness.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let config_path = config_path.to_string_lossy().to_string();
    let stderr = refused_start(
        harness
            .command
            .args(["-c", &config_path, "--failed-grace", "0s"]),
    );
    assert!(
        stderr.contains("compute_ctl_config.jwks.keys[0]"),
        "{stderr}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", harness.port)).is_err());
}

/// Without keys the API is open but on loopback only; asking for another address is refused.
#[test]
fn no_keys_means_loopback_only() {
    let mut harness = Harness::new();
    let stderr = refused_start(harness.command.args([
        "--embedded-default",
        "--http-listen",
        "0.0.0.0",
        "--failed-grace",
        "0s",
    ]));
    assert!(stderr.contains("without authentication"), "{stderr}");
}

/// An RSA key pair made by `openssl`: (private key as PKCS#1 DER, its JWK with `"alg": "RS256"`).
fn rsa_key_pair(dir: &std::path::Path) -> (Vec<u8>, Value) {
    let pem = dir.join("rsa.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let modulus = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    let text = String::from_utf8(modulus.stdout).unwrap();
    let hex = text.trim().strip_prefix("Modulus=").unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
        .collect();
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk =
        json!({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "use": "sig", "kid": "rsa-1"});
    let der = dir.join("rsa.der");
    let converted = std::process::Command::new("openssl")
        .args(["rsa", "-traditional", "-outform", "DER", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&der)
        .output()
        .unwrap();
    assert!(converted.status.success(), "{converted:?}");
    (std::fs::read(&der).unwrap(), jwk)
}

/// A key set with an RS256 and an Ed25519 key verifies the tokens of each with its own key
/// (upstream refuses the Ed25519 key's once any key is RS256); a wrong signature of either
/// algorithm, and a token of one algorithm signed by nobody in the set, are refused.
#[test]
fn mixed_key_sets_verify_each_key() {
    let mut harness = Harness::new();
    let (der, rsa_jwk) = rsa_key_pair(harness.path());
    let ed_key = key_pair();
    let compute = start_with_keys(&mut harness, json!([rsa_jwk, jwk(&ed_key)]), &[]);
    let claims = json!({"compute_id": "compute-1", "exp": in_an_hour()});
    let encoding = EncodingKey::from_rsa_der(&der);
    let rs256 = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &encoding).unwrap();
    assert_eq!(status_with(&compute, Some(&rs256)).status, 200);
    let eddsa = token(&ed_key, claims.clone());
    let answer = status_with(&compute, Some(&eddsa));
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Another signature on the same header and claims: refused, for either algorithm.
    for valid in [&rs256, &eddsa] {
        let (signed, signature) = valid.rsplit_once('.').unwrap();
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap();
        bytes[0] ^= 0x01;
        let tampered = format!(
            "{signed}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        assert_eq!(status_with(&compute, Some(&tampered)).status, 401);
    }
    let stranger = token(&key_pair(), claims);
    assert_eq!(status_with(&compute, Some(&stranger)).status, 401);
}
