//! JSON Web Tokens: HS256 access and refresh tokens.
//!
//! Claims: `sub` (user id), `typ` (`access` or `refresh`), `jti` (token id), `fam` (the login's
//! token family, shared by every token a refresh chain issues), `ver` (the user's token version:
//! bumping it revokes every token of the user), `iat`, `nbf`, `exp` (epoch seconds), `iss` (`owl`)
//! and `aud` (`owl-query-api`), both checked.
//!
//! Only HS256 is accepted: a token whose header names `none`, another HMAC or an asymmetric algorithm
//! is refused before its signature is looked at. Expiry and not-before are checked against the
//! query API's [`Clock`](crate::Clock) rather than jsonwebtoken's wall clock, so tests move time
//! instead of sleeping; jsonwebtoken still requires the claims to be present.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Seconds a token's `nbf` may be ahead of this node's clock (replicas' clocks differ a little).
const NBF_LEEWAY_S: i64 = 30;
/// The `iss` of every Owl token.
pub const ISSUER: &str = "owl";
/// The `aud` of every Owl token: the query API, the only service that accepts them.
pub const AUDIENCE: &str = "owl-query-api";

/// The two kinds of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Presented on every API call; 30 minutes by default.
    Access,
    /// Exchanged for a new pair at `/api/auth/refresh`; single use.
    Refresh,
}

/// The claims of an Owl token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Token type.
    pub typ: TokenType,
    /// Token id.
    pub jti: String,
    /// Token family (one per login).
    pub fam: String,
    /// The user's token version when issued.
    pub ver: i64,
    /// Issued at (epoch s).
    pub iat: i64,
    /// Not before (epoch s).
    pub nbf: i64,
    /// Expires (epoch s).
    pub exp: i64,
    /// Issuer: [`ISSUER`].
    pub iss: String,
    /// Audience: [`AUDIENCE`].
    pub aud: String,
}

impl Claims {
    /// The user id.
    pub fn user_id(&self) -> Option<i64> {
        self.sub.parse().ok()
    }
}

/// Why a token was refused. All of them answer 401; the reason is logged at debug level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON, or claims missing.
    #[error("malformed token")]
    Malformed,
    /// The header names another algorithm than HS256 (including `none`).
    #[error("token algorithm is not HS256")]
    WrongAlgorithm,
    /// The signature does not match.
    #[error("bad token signature")]
    BadSignature,
    /// An access token where a refresh token was expected, or the reverse.
    #[error("wrong token type")]
    WrongType,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// Before `nbf`.
    #[error("token not yet valid")]
    NotYetValid,
}

/// Signs and checks tokens with one HS256 secret.
#[derive(Clone)]
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenService { .. }")
    }
}

impl TokenService {
    /// A service signing with `secret` (at least 32 bytes; checked by config validation or made so by
    /// the secret file).
    pub fn new(secret: &[u8]) -> TokenService {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        // A token signed with the same secret for another service (or by a tool that shares it)
        // is not an Owl sign-in.
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "iss", "aud"]);
        TokenService {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs claims.
    pub fn sign(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing of serialisable claims cannot fail")
    }

    /// Checks a token's algorithm, signature, type and validity window at `now_s`.
    pub fn verify(&self, token: &str, expected: TokenType, now_s: i64) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            match e.kind() {
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::WrongAlgorithm,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            }
        })?;
        let claims = data.claims;
        if claims.typ != expected {
            return Err(TokenError::WrongType);
        }
        if now_s >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now_s + NBF_LEEWAY_S {
            return Err(TokenError::NotYetValid);
        }
        if claims.user_id().is_none() {
            return Err(TokenError::Malformed);
        }
        Ok(claims)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    pub(crate) fn claims(typ: TokenType, now: i64) -> Claims {
        Claims {
            sub: "7".into(),
            typ,
            jti: "j".into(),
            fam: "f".into(),
            ver: 0,
            iat: now,
            nbf: now,
            exp: now + 1800,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        }
    }

    #[test]
    fn issuer_and_audience_are_set_and_checked() {
        let service = TokenService::new(SECRET);
        let now = 1_700_000_000;
        let token = service.sign(&claims(TokenType::Access, now));
        assert_eq!(
            service.verify(&token, TokenType::Access, now).unwrap().aud,
            AUDIENCE
        );
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        for (iss, aud) in [("other", AUDIENCE), (ISSUER, "other-service")] {
            let foreign = Claims {
                iss: iss.into(),
                aud: aud.into(),
                ..claims(TokenType::Access, now)
            };
            let token = forge(header, &foreign, Some(SECRET));
            assert!(
                service.verify(&token, TokenType::Access, now).is_err(),
                "{iss} {aud}"
            );
        }
        // Without the claims at all.
        let mut bare = serde_json::to_value(claims(TokenType::Access, now)).unwrap();
        bare.as_object_mut().unwrap().remove("aud");
        let head = URL_SAFE_NO_PAD.encode(header);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&bare).unwrap());
        let input = format!("{head}.{body}");
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
        assert!(service.verify(&token, TokenType::Access, now).is_err());
    }

    /// A token with any header, signed with HMAC-SHA256 over the given secret (or unsigned).
    pub(crate) fn forge(header: &str, claims: &Claims, secret: Option<&[u8]>) -> String {
        use hmac::{Hmac, Mac};
        let head = URL_SAFE_NO_PAD.encode(header);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        let signing_input = format!("{head}.{body}");
        let signature = match secret {
            Some(secret) => {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
                mac.update(signing_input.as_bytes());
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            }
            None => String::new(),
        };
        format!("{signing_input}.{signature}")
    }

    #[test]
    fn round_trip_and_type() {
        let service = TokenService::new(SECRET);
        let token = service.sign(&claims(TokenType::Access, 1_000));
        assert_eq!(service.verify(&token, TokenType::Access, 1_000).unwrap().sub, "7");
        assert_eq!(
            service.verify(&token, TokenType::Refresh, 1_000),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn expiry_and_not_before_follow_the_given_clock() {
        let service = TokenService::new(SECRET);
        let token = service.sign(&claims(TokenType::Access, 1_000));
        assert!(service.verify(&token, TokenType::Access, 2_799).is_ok());
        assert_eq!(
            service.verify(&token, TokenType::Access, 2_800),
            Err(TokenError::Expired)
        );
        let mut early = claims(TokenType::Access, 1_000);
        early.nbf = 5_000;
        early.exp = 9_000;
        let token = service.sign(&early);
        assert_eq!(
            service.verify(&token, TokenType::Access, 1_000),
            Err(TokenError::NotYetValid)
        );
        assert!(service.verify(&token, TokenType::Access, 5_000).is_ok());
    }

    #[test]
    fn alg_none_other_algorithms_and_bad_signatures_are_refused() {
        let service = TokenService::new(SECRET);
        let c = claims(TokenType::Access, 1_000);
        let none = forge(r#"{"alg":"none","typ":"JWT"}"#, &c, None);
        assert!(matches!(
            service.verify(&none, TokenType::Access, 1_000),
            Err(TokenError::WrongAlgorithm | TokenError::Malformed)
        ));
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &c,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            service.verify(&hs512, TokenType::Access, 1_000),
            Err(TokenError::WrongAlgorithm)
        );
        // RS256 header with an HMAC signature: the classic key-confusion attack.
        let confused = forge(r#"{"alg":"RS256","typ":"JWT"}"#, &c, Some(SECRET));
        assert_eq!(
            service.verify(&confused, TokenType::Access, 1_000),
            Err(TokenError::WrongAlgorithm)
        );
        let other_key = forge(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &c,
            Some(b"another-secret-another-secret-00"),
        );
        assert_eq!(
            service.verify(&other_key, TokenType::Access, 1_000),
            Err(TokenError::BadSignature)
        );
        let genuine = forge(r#"{"alg":"HS256","typ":"JWT"}"#, &c, Some(SECRET));
        assert!(
            service.verify(&genuine, TokenType::Access, 1_000).is_ok(),
            "the forger itself is sound"
        );
        let mut tampered_claims = c.clone();
        tampered_claims.sub = "1".into();
        let (head, _) = genuine.split_once('.').unwrap();
        let signature = genuine.rsplit('.').next().unwrap();
        let tampered = format!(
            "{head}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered_claims).unwrap())
        );
        assert_eq!(
            service.verify(&tampered, TokenType::Access, 1_000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            service.verify("not.a.token", TokenType::Access, 1_000),
            Err(TokenError::Malformed)
        );
    }
}
