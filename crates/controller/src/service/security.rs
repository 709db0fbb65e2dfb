//! CreateAcls, DescribeAcls, DeleteAcls and the SCRAM credential RPCs:
//! proto to `sluice_auth`'s types and back. The front door has checked
//! the cluster-level right already; each change gets an audit line.

use sluice_auth::scram::{Mechanism, ScramCredential};
use sluice_auth::{AclBinding, AclFilter};
use sluice_proto::controller as pb;
use sluice_server::access::{Caller, audit_change};

use crate::controller::ScramChange;
use crate::{Controller, ControllerError};

pub(super) fn binding_from(b: &pb::AclBinding) -> Result<AclBinding, ControllerError> {
    let parse = || -> Result<AclBinding, sluice_auth::AuthError> {
        Ok(AclBinding {
            resource_type: b.resource_type.parse()?,
            pattern_type: b.pattern_type.parse()?,
            resource_name: b.resource_name.clone(),
            // Stored as parsed, so filters by principal find it.
            principal: sluice_auth::Principal::parse(&b.principal)?.to_string(),
            host: match b.host.trim() {
                "" => "*".into(),
                h => h.to_string(),
            },
            operation: b.operation.parse()?,
            permission: b.permission.parse()?,
        })
    };
    parse().map_err(ControllerError::InvalidAcl)
}

pub(super) fn binding_to(b: &AclBinding) -> pb::AclBinding {
    pb::AclBinding {
        resource_type: b.resource_type.as_str().into(),
        pattern_type: b.pattern_type.as_str().into(),
        resource_name: b.resource_name.clone(),
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation.as_str().into(),
        permission: b.permission.as_str().into(),
    }
}

fn filter_from(f: &pb::AclFilter) -> Result<AclFilter, ControllerError> {
    AclFilter::parse(
        f.resource_type.as_deref(),
        f.pattern_type.as_deref(),
        f.resource_name.as_deref(),
        f.principal.as_deref(),
        f.host.as_deref(),
        f.operation.as_deref(),
        f.permission.as_deref(),
    )
    .map_err(ControllerError::InvalidAcl)
}

pub(super) async fn create_acls(
    controller: &Controller,
    caller: &Caller,
    req: pb::CreateAclsRequest,
) -> Result<pb::CreateAclsResponse, ControllerError> {
    let parsed: Vec<_> = req.creations.iter().map(binding_from).collect();
    let valid: Vec<AclBinding> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let mut outcomes = controller.create_acls(valid).await?.into_iter();
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Err(e) => e.to_proto(),
            Ok(b) => match outcomes.next() {
                Some(Ok(())) => {
                    audit_change(caller, "create-acl", &b.to_string());
                    sluice_proto::common::Error::default()
                }
                Some(Err(e)) => e.to_proto(),
                None => ControllerError::InvalidRequest("lost result".into()).to_proto(),
            },
        })
        .collect();
    Ok(pb::CreateAclsResponse { results })
}

pub(super) async fn describe_acls(
    controller: &Controller,
    req: pb::DescribeAclsRequest,
) -> Result<pb::DescribeAclsResponse, ControllerError> {
    let filter = match &req.filter {
        Some(f) => filter_from(f)?,
        None => AclFilter::default(),
    };
    let bindings = controller
        .acls()
        .await?
        .iter()
        .filter(|b| filter.matches(b))
        .map(binding_to)
        .collect();
    Ok(pb::DescribeAclsResponse { bindings })
}

pub(super) async fn delete_acls(
    controller: &Controller,
    caller: &Caller,
    req: pb::DeleteAclsRequest,
) -> Result<pb::DeleteAclsResponse, ControllerError> {
    let parsed: Vec<_> = req.filters.iter().map(filter_from).collect();
    let valid: Vec<AclFilter> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let mut deleted = controller.delete_acls(&valid).await?.into_iter();
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Err(e) => pb::DeleteAclsResult {
                error: Some(e.to_proto()),
                deleted: Vec::new(),
            },
            Ok(_) => {
                let gone = deleted.next().unwrap_or_default();
                for b in &gone {
                    audit_change(caller, "delete-acl", &b.to_string());
                }
                pb::DeleteAclsResult {
                    error: None,
                    deleted: gone.iter().map(binding_to).collect(),
                }
            }
        })
        .collect();
    Ok(pb::DeleteAclsResponse { results })
}

fn mechanism(name: &str) -> Result<Mechanism, ControllerError> {
    Mechanism::parse(name).ok_or_else(|| {
        ControllerError::UnacceptableCredential(format!(
            "unknown mechanism {name:?}: SCRAM-SHA-256 or SCRAM-SHA-512"
        ))
    })
}

pub(super) async fn alter_scram(
    controller: &Controller,
    caller: &Caller,
    req: pb::AlterUserScramCredentialsRequest,
) -> pb::AlterUserScramCredentialsResponse {
    // One result per user, the first failure of that user's changes.
    let mut users: Vec<(String, Option<ControllerError>)> = Vec::new();
    let mut changes = Vec::new();
    fn note(
        users: &mut Vec<(String, Option<ControllerError>)>,
        user: &str,
        err: Option<ControllerError>,
    ) {
        match users.iter_mut().find(|(u, _)| u == user) {
            Some((_, e)) => {
                if e.is_none() {
                    *e = err;
                }
            }
            None => users.push((user.to_string(), err)),
        }
    }
    for d in &req.deletions {
        match mechanism(&d.mechanism) {
            Ok(m) => {
                note(&mut users, &d.user, None);
                changes.push(ScramChange::Delete {
                    user: d.user.clone(),
                    mechanism: m,
                });
            }
            Err(e) => note(&mut users, &d.user, Some(e)),
        }
    }
    for u in &req.upsertions {
        let credential = mechanism(&u.mechanism).and_then(|m| {
            ScramCredential::from_salted_password(
                m,
                &u.salt,
                &u.salted_password,
                u.iterations.max(0) as u32,
            )
            .map_err(|e| ControllerError::UnacceptableCredential(e.to_string()))
        });
        match credential {
            Ok(credential) => {
                note(&mut users, &u.user, None);
                changes.push(ScramChange::Upsert {
                    user: u.user.clone(),
                    credential,
                });
            }
            Err(e) => note(&mut users, &u.user, Some(e)),
        }
    }
    // Users with a refused change get nothing applied.
    let refused: Vec<String> = users
        .iter()
        .filter(|(_, e)| e.is_some())
        .map(|(u, _)| u.clone())
        .collect();
    let changes: Vec<ScramChange> = changes
        .into_iter()
        .filter(|c| {
            let user = match c {
                ScramChange::Upsert { user, .. } | ScramChange::Delete { user, .. } => user,
            };
            !refused.contains(user)
        })
        .collect();
    let described: Vec<(String, &'static str, String)> = changes
        .iter()
        .map(|c| match c {
            ScramChange::Upsert { user, credential } => (
                user.clone(),
                "set-scram",
                credential.mechanism.name().to_string(),
            ),
            ScramChange::Delete { user, mechanism } => {
                (user.clone(), "delete-scram", mechanism.name().to_string())
            }
        })
        .collect();
    let outcomes = controller.alter_scram(changes).await;
    for ((user, action, mech), outcome) in described.into_iter().zip(outcomes) {
        match outcome {
            Ok(()) => audit_change(caller, action, &format!("User:{user} {mech}")),
            Err(e) => note(&mut users, &user, Some(e)),
        }
    }
    pb::AlterUserScramCredentialsResponse {
        results: users
            .into_iter()
            .map(|(user, e)| pb::UserScramResult {
                user,
                error: e.map(|e| e.to_proto()),
            })
            .collect(),
    }
}

pub(super) async fn describe_scram(
    controller: &Controller,
    req: pb::DescribeUserScramCredentialsRequest,
) -> Result<pb::DescribeUserScramCredentialsResponse, ControllerError> {
    let all = controller.scram_credentials().await?;
    let info = |creds: &[ScramCredential]| {
        creds
            .iter()
            .map(|c| pb::ScramCredentialInfo {
                mechanism: c.mechanism.name().into(),
                iterations: c.iterations as i32,
            })
            .collect()
    };
    let users = if req.users.is_empty() {
        all.iter()
            .map(|(u, c)| pb::UserScramCredentials {
                user: u.clone(),
                error: None,
                credentials: info(c),
            })
            .collect()
    } else {
        req.users
            .iter()
            .map(|u| match all.get(u) {
                Some(c) => pb::UserScramCredentials {
                    user: u.clone(),
                    error: None,
                    credentials: info(c),
                },
                None => pb::UserScramCredentials {
                    user: u.clone(),
                    error: Some(
                        ControllerError::NoCredential {
                            user: u.clone(),
                            mechanism: "SCRAM".into(),
                        }
                        .to_proto(),
                    ),
                    credentials: Vec::new(),
                },
            })
            .collect()
    };
    Ok(pb::DescribeUserScramCredentialsResponse { users })
}

pub(super) async fn create_token(
    controller: &Controller,
    caller: &Caller,
    req: pb::CreateTokenRequest,
) -> pb::CreateTokenResponse {
    let expires = (req.expires_in_ms > 0).then_some(req.expires_in_ms);
    match controller
        .create_token(&req.principal, expires, &req.description)
        .await
    {
        Ok((id, token, record)) => {
            audit_change(
                caller,
                "create-token",
                &format!("{id} for {}", record.principal),
            );
            pb::CreateTokenResponse {
                error: None,
                token_id: id,
                token,
                expires_ms: record.expires_ms.unwrap_or(-1),
            }
        }
        Err(e) => pb::CreateTokenResponse {
            error: Some(e.to_proto()),
            ..Default::default()
        },
    }
}

pub(super) async fn revoke_token(
    controller: &Controller,
    caller: &Caller,
    req: pb::RevokeTokenRequest,
) -> pb::RevokeTokenResponse {
    let result = controller.revoke_token(&req.token_id).await;
    if result.is_ok() {
        audit_change(caller, "revoke-token", &req.token_id);
    }
    pb::RevokeTokenResponse {
        error: result.err().map(|e| e.to_proto()),
    }
}

pub(super) async fn describe_tokens(
    controller: &Controller,
) -> Result<pb::DescribeTokensResponse, ControllerError> {
    Ok(pb::DescribeTokensResponse {
        tokens: controller
            .tokens()
            .await?
            .into_iter()
            .map(|(id, t)| pb::TokenInfo {
                token_id: id,
                principal: t.principal,
                created_ms: t.created_ms,
                expires_ms: t.expires_ms.unwrap_or(-1),
                description: t.description,
            })
            .collect(),
    })
}

pub(super) async fn alter_quotas(
    controller: &Controller,
    caller: &Caller,
    req: pb::AlterClientQuotasRequest,
) -> pb::AlterClientQuotasResponse {
    let mut results = Vec::with_capacity(req.alterations.len());
    for a in req.alterations {
        let entity = a.entity.unwrap_or_default();
        let outcome = controller
            .alter_quota(&entity.entity_type, &entity.name, &a.key, a.value)
            .await;
        results.push(match outcome {
            Ok(()) => {
                let value = a.value.map_or("(removed)".to_string(), |v| v.to_string());
                audit_change(
                    caller,
                    "alter-quota",
                    &format!("{} {}: {}={value}", entity.entity_type, entity.name, a.key),
                );
                sluice_proto::common::Error::default()
            }
            Err(e) => e.to_proto(),
        });
    }
    pb::AlterClientQuotasResponse { results }
}

pub(super) async fn describe_quotas(
    controller: &Controller,
) -> Result<pb::DescribeClientQuotasResponse, ControllerError> {
    use sluice_server::quota::QuotaKind;
    let quotas = controller
        .quotas()
        .await?
        .into_iter()
        .map(|((entity_type, name), limits)| pb::ClientQuota {
            entity: Some(pb::QuotaEntity { entity_type, name }),
            values: [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request]
                .into_iter()
                .filter_map(|k| limits.get(k).map(|v| (k.key().to_string(), v)))
                .collect(),
        })
        .collect();
    Ok(pb::DescribeClientQuotasResponse { quotas })
}
