//! Property test of the OAuth 2.0 token response parser (RFC 6749 §5.1 and §5.2), through
//! the public `ClientCredentials::fetch` over a token endpoint double: any status and body
//! never panics and gives a token exactly when the reference reading of RFC 6749 says so,
//! else a token endpoint or token response error that never repeats the access token.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use flext_auth::{ClientCredentials, CredentialProvider, Error};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

/// What RFC 6749 (as flext reads it) makes of a response.
#[derive(Debug, PartialEq)]
enum Expected {
    /// A token with this lifetime (none: no expiry).
    Token(String, Option<Duration>),
    /// A non-2xx answer: `is_token_endpoint`.
    Endpoint,
    /// A 2xx answer that is not a usable token: `is_token_response`.
    Response,
}

fn reference(status: u16, body: &[u8]) -> Expected {
    if body.len() > 64 * 1024 {
        return Expected::Response;
    }
    if !(200..300).contains(&status) {
        return Expected::Endpoint;
    }
    let Ok(Value::Object(json)) = serde_json::from_slice::<Value>(body) else {
        return Expected::Response;
    };
    let token = match json.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return Expected::Response,
    };
    match json.get("token_type") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Expected::Response,
    }
    let lifetime = match json.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Some(Duration::from_secs(secs)),
            (None, Some(secs)) if secs >= 0.0 => Duration::try_from_secs_f64(secs).ok(),
            _ => return Expected::Response,
        },
        Some(Value::String(s)) => match s.trim().parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => return Expected::Response,
        },
        Some(_) => return Expected::Response,
    };
    Expected::Token(token, lifetime)
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6..1e12f64).prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        " ?[0-9]{1,6} ?".prop_map(Value::from),
        Just(json!([1])),
        Just(json!({"a": 1})),
    ]
}

/// Token responses: each member absent, well-formed or not; an `error` member too.
fn token_body() -> impl Strategy<Value = Vec<u8>> {
    let access = prop_oneof![
        2 => "tok-[a-zA-Z0-9]{1,12}".prop_map(Value::from),
        1 => Just(Value::from("")),
        1 => json_value(),
    ];
    let token_type = prop_oneof![
        Just(Value::from("Bearer")),
        Just(Value::from("bearer")),
        Just(Value::from("BEARER")),
        Just(Value::from("mac")),
        json_value(),
    ];
    (
        prop::option::of(access),
        prop::option::of(token_type),
        prop::option::of(json_value()),
        prop::option::of("\\PC{0,20}"),
    )
        .prop_map(|(access, token_type, expires_in, error)| {
            let mut m = Map::new();
            for (key, value) in [
                ("access_token", access),
                ("token_type", token_type),
                ("expires_in", expires_in),
                ("error", error.map(Value::from)),
            ] {
                if let Some(v) = value {
                    m.insert(key.to_string(), v);
                }
            }
            serde_json::to_vec(&Value::Object(m)).unwrap()
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => token_body(),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(b"[]".to_vec()),
        1 => Just(vec![b' '; 64 * 1024 + 1]),
    ]
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => Just(200u16),
        1 => prop::sample::select(vec![201u16, 204, 299, 302, 400, 401, 403, 500, 503]),
    ]
}

async fn fetch(status: u16, body: Vec<u8>) -> Result<flext_auth::Token, Error> {
    let body = Bytes::from(body);
    let endpoint = tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let body = body.clone();
        async move {
            let mut res = Response::new(Full::new(body));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(res)
        }
    });
    let provider = ClientCredentials::builder("https://auth.example.com/token", "cid", "csecret")
        .build(endpoint)
        .unwrap();
    provider
        .fetch()
        .await
        .map_err(|e| match e.downcast::<Error>() {
            Ok(e) => *e,
            Err(other) => panic!("not a flext_auth::Error: {other:?}"),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn token_responses_parse_like_rfc_6749(status in status(), body in body()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let want = reference(status, &body);
        let got = rt.block_on(fetch(status, body.clone()));
        match (got, want) {
            (Ok(token), Expected::Token(secret, lifetime)) => {
                prop_assert_eq!(token.secret().expose_secret(), secret.as_str());
                prop_assert_eq!(token.lifetime(), lifetime);
            }
            (Err(e), want @ (Expected::Endpoint | Expected::Response)) => {
                prop_assert!(e.is_provider(), "{e:?}");
                if want == Expected::Endpoint {
                    prop_assert!(e.is_token_endpoint(), "{e:?}");
                    prop_assert_eq!(e.status().map(|s| s.as_u16()), Some(status));
                    // Server text is kept printable and bounded.
                    if let Some(text) = e.oauth_error() {
                        prop_assert!(text.chars().count() <= 256 && !text.chars().any(char::is_control));
                    }
                } else {
                    prop_assert!(e.is_token_response(), "{e:?}");
                }
                // The error never repeats a token the body held, nor the client secret.
                let printed = format!("{e} {e:?}");
                prop_assert!(!printed.contains("csecret"), "{printed}");
                if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&body)
                    && let Some(Value::String(t)) = m.get("access_token")
                    && t.starts_with("tok-")
                {
                    prop_assert!(!printed.contains(t.as_str()), "{printed}");
                }
            }
            (got, want) => prop_assert!(false, "{status} {:?}: got {got:?}, want {want:?}", String::from_utf8_lossy(&body)),
        }
    }
}
