//! The gRPC front door: every request to a service's slot passes here. It
//! identifies the caller ([`Access::identify`], or the caller a trusted
//! service forwards for), enforces what the table says can be decided
//! without the body (cluster operations, internal RPCs, a method with no
//! entry), and leaves the [`Caller`] in the request for the request logic.

use sluice_auth::{Operation, table};
use sluice_tls::ConnInfo;
use sluice_types::{ApiError, ErrorCode};

use super::{Access, Caller};

/// gRPC metadata naming the principal a service forwards a request for.
pub const ON_BEHALF_OF_HEADER: &str = "sluice-on-behalf-of";
/// With [`ON_BEHALF_OF_HEADER`]: that client's address.
pub const CLIENT_HOST_HEADER: &str = "sluice-client-host";
/// The client's `client.id` (for client quotas; Kafka's request header).
pub const CLIENT_ID_HEADER: &str = "sluice-client-id";

/// Admits `req` or says why not.
pub(crate) fn admit<B>(access: &Access, req: &mut http::Request<B>) -> Result<(), tonic::Status> {
    let authorization = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Before the ACLs and credentials are read every check would fail: a
    // client told "not authorized" gives up, one told "unavailable" retries.
    if (access.enabled() || authorization.is_some()) && !access.is_loaded() {
        return Err(tonic::Status::unavailable("loading ACLs and credentials"));
    }
    let conn = access.identify(ConnInfo::of(req.extensions()));
    // Credentials in the request (a token, a password) say who it is; else
    // the connection does (certificate, own process, anonymous).
    let direct = match authorization.and_then(|v| access.authenticate(v, &conn.host)) {
        None => conn,
        Some(Ok(caller)) => caller,
        Some(Err(e)) => return Err(e.to_status()),
    };
    let caller = match forwarded(req.headers()) {
        None => direct,
        // Without ACLs anyone would pass the check below: only this
        // process's own services may speak for someone else then.
        Some(_) if !access.enabled() && !direct.internal => direct,
        Some(fwd) => {
            // Only a service may speak for someone else.
            let fwd = fwd.map_err(|m| ApiError::invalid_request(m).to_status())?;
            access
                .require_cluster(&direct, Operation::ClusterAction)
                .map_err(|e| e.to_status())?;
            fwd
        }
    };
    if access.enabled() {
        let path = req.uri().path();
        match table::grpc(path) {
            None => {
                tracing::error!(path, "a gRPC method with no access entry; refusing it");
                return Err(ApiError::new(
                    ErrorCode::ClusterAuthorizationFailed,
                    format!("{path} has no access rule"),
                )
                .to_status());
            }
            Some(r) => {
                if let Some(op) = r.front_door() {
                    access
                        .require_cluster(&caller, op)
                        .map_err(|e| e.to_status())?;
                }
            }
        }
    }
    let mut caller = caller;
    if let Some(id) = req
        .headers()
        .get(CLIENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        caller.client_id = id.to_string();
    }
    req.extensions_mut().insert(caller);
    Ok(())
}

/// The caller a request is forwarded for, if it says so.
fn forwarded(headers: &http::HeaderMap) -> Option<Result<Caller, String>> {
    let principal = headers.get(ON_BEHALF_OF_HEADER)?;
    let parse = || {
        let principal = principal
            .to_str()
            .map_err(|_| format!("{ON_BEHALF_OF_HEADER} is not text"))?;
        let principal = sluice_auth::Principal::parse(principal)
            .map_err(|e| format!("{ON_BEHALF_OF_HEADER}: {e}"))?;
        let host = headers
            .get(CLIENT_HOST_HEADER)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("unknown");
        Ok(Caller::user(principal, host))
    };
    Some(parse())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    /// Every RPC of every Sluice service has an entry in the access table
    /// (a method without one is refused once ACLs are on), and every entry
    /// names an RPC that exists.
    #[test]
    fn every_grpc_method_has_an_access_rule() {
        let set = prost_types::FileDescriptorSet::decode(sluice_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut methods = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for m in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), m.name());
                    assert!(
                        sluice_auth::table::grpc(&path).is_some(),
                        "{path} has no entry in sluice_auth::table::GRPC"
                    );
                    methods.push(format!("{}/{}", service.name(), m.name()));
                }
            }
        }
        for (name, _) in sluice_auth::table::GRPC {
            assert!(methods.iter().any(|m| m == name), "{name} is not an RPC");
        }
    }
}
