//! One Kafka connection's identity: who it is ([`Rights`]) and, on a
//! `SASL_*://` listener, the SASL exchange that decides it (KIP-43's
//! SaslHandshake v1 then SaslAuthenticate, as librdkafka, the Java client
//! and kafka-python speak it). Until the exchange succeeds only
//! ApiVersions and the SASL requests are served; a failed one answers
//! SASL_AUTHENTICATION_FAILED and closes the connection (Kafka's rule).
//!
//! PLAIN checks the password against the user's SCRAM credential, so one
//! `sluice users` entry serves both mechanisms.

use std::net::SocketAddr;

use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use sluice_auth::Principal;
use sluice_auth::scram::{Mechanism, ScramServer};
use sluice_server::access::{Access, Caller, Rights, audit_authentication_failed};
use sluice_tls::ConnInfo;
use sluice_types::ErrorCode;

use super::str_bytes;

/// Where a connection is in authenticating.
enum State {
    /// Serving every API (no SASL on this listener, or it succeeded).
    Open,
    /// A SASL listener: waiting for SaslHandshake.
    Handshake,
    /// Mechanism chosen: waiting for SaslAuthenticate.
    Plain,
    Scram(Box<ScramServer>, Option<String>),
}

pub(super) struct Session {
    rights: Rights,
    state: State,
    host: String,
}

/// What the connection does after a SASL request.
pub(super) enum Next {
    Continue,
    /// Send the answer, then close (a failed authentication).
    Close,
}

const UNSUPPORTED_SASL_MECHANISM: i16 = ErrorCode::UnsupportedSaslMechanism as i16;
const ILLEGAL_SASL_STATE: i16 = ErrorCode::IllegalSaslState as i16;
const SASL_AUTHENTICATION_FAILED: i16 = ErrorCode::SaslAuthenticationFailed as i16;

impl Session {
    pub(super) fn new(access: &Access, conn: &ConnInfo, peer: SocketAddr) -> Self {
        let state = if access.sasl_mechanisms().is_some() {
            State::Handshake
        } else {
            State::Open
        };
        Session {
            rights: Rights::new(access, access.identify(Some(conn))),
            state,
            host: peer.ip().to_canonical().to_string(),
        }
    }

    pub(super) fn rights(&self) -> &Rights {
        &self.rights
    }

    /// Whether `api` may be served now.
    pub(super) fn admits(&self, api: ApiKey) -> bool {
        matches!(self.state, State::Open)
            || matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            )
    }

    /// SaslHandshake; v0 (raw tokens after it, before KIP-152) is refused.
    pub(super) fn handshake(
        &mut self,
        req: SaslHandshakeRequest,
        version: i16,
    ) -> SaslHandshakeResponse {
        let access = self.rights.access().clone();
        let offered: Vec<String> = access
            .sasl_mechanisms()
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        let resp = SaslHandshakeResponse::default()
            .with_mechanisms(offered.iter().map(|m| str_bytes(m.clone())).collect());
        if !matches!(self.state, State::Handshake) || version < 1 {
            return resp.with_error_code(ILLEGAL_SASL_STATE);
        }
        let asked = req.mechanism.to_ascii_uppercase();
        if !offered.contains(&asked) {
            return resp.with_error_code(UNSUPPORTED_SASL_MECHANISM);
        }
        self.state = match Mechanism::parse(&asked) {
            Some(m) => State::Scram(Box::new(ScramServer::new(m)), None),
            None => State::Plain,
        };
        resp
    }

    pub(super) fn authenticate(
        &mut self,
        req: SaslAuthenticateRequest,
    ) -> (SaslAuthenticateResponse, Next) {
        let state = std::mem::replace(&mut self.state, State::Open);
        let outcome = match state {
            State::Open | State::Handshake => {
                self.state = state;
                return (
                    SaslAuthenticateResponse::default()
                        .with_error_code(ILLEGAL_SASL_STATE)
                        .with_error_message(Some(str_bytes(
                            "SaslAuthenticate before SaslHandshake (or after authenticating)",
                        ))),
                    Next::Close,
                );
            }
            State::Plain => self.plain(&req.auth_bytes),
            State::Scram(mut server, None) => {
                // client-first: answer server-first, wait for client-final.
                match server.client_first(&req.auth_bytes) {
                    Ok(user) => {
                        let credential = self.rights.access().credential(&user, server.mechanism());
                        let reply = server.server_first(credential.as_ref());
                        self.state = State::Scram(server, Some(user));
                        return (
                            SaslAuthenticateResponse::default().with_auth_bytes(reply.into()),
                            Next::Continue,
                        );
                    }
                    Err(e) => Err((server.mechanism().name(), String::new(), e.to_string())),
                }
            }
            State::Scram(mut server, Some(user)) => match server.client_final(&req.auth_bytes) {
                Ok((reply, user)) => Ok((user, reply)),
                Err(e) => Err((server.mechanism().name(), user, e.to_string())),
            },
        };
        match outcome {
            Ok((user, reply)) => {
                let caller = Caller::user(Principal::user(user), self.host.clone());
                tracing::debug!(principal = %caller.principal, "SASL authentication succeeded");
                self.rights = Rights::new(self.rights.access(), caller);
                self.state = State::Open;
                (
                    SaslAuthenticateResponse::default().with_auth_bytes(reply.into()),
                    Next::Continue,
                )
            }
            Err((mechanism, user, reason)) => {
                audit_authentication_failed(&self.host, mechanism, &user, &reason);
                (
                    SaslAuthenticateResponse::default()
                        .with_error_code(SASL_AUTHENTICATION_FAILED)
                        .with_error_message(Some(str_bytes(format!(
                            "authentication failed ({mechanism}): invalid credentials"
                        )))),
                    Next::Close,
                )
            }
        }
    }

    /// `[authzid] NUL authcid NUL password` (RFC 4616).
    fn plain(&self, bytes: &[u8]) -> Result<(String, Vec<u8>), (&'static str, String, String)> {
        let fail = |user: &str, why: &str| Err(("PLAIN", user.to_string(), why.to_string()));
        let Ok(text) = std::str::from_utf8(bytes) else {
            return fail("", "the message is not UTF-8");
        };
        let parts: Vec<&str> = text.split('\0').collect();
        let [authzid, user, password] = parts[..] else {
            return fail("", "the message is not authzid NUL user NUL password");
        };
        if !authzid.is_empty() && authzid != user {
            return fail(user, "authorization id differs from the user");
        }
        if self.rights.access().check_password(user, password) {
            Ok((user.to_string(), Vec::new()))
        } else {
            fail(user, "unknown user or wrong password")
        }
    }
}
