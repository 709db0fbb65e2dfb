//! The admin side of access control: ACLs (`sluice acls`, like
//! kafka-acls.sh) and users' SCRAM credentials (`sluice users`, like
//! `kafka-configs.sh --entity-type users`). The password never leaves the
//! client: it sends the salted password, as Kafka's AlterUserScramCredentials
//! does.

use sluice_auth::AclBinding;
use sluice_auth::scram::{Mechanism, ScramCredential};
use sluice_proto::controller::{
    AclBinding as PbBinding, AlterClientQuotasRequest, AlterUserScramCredentialsRequest,
    CreateAclsRequest, CreateTokenRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeClientQuotasRequest, DescribeTokensRequest, DescribeUserScramCredentialsRequest,
    QuotaAlteration, QuotaEntity, RevokeTokenRequest, ScramCredentialDeletion,
    ScramCredentialUpsertion,
};
use sluice_types::{ApiError, ErrorCode};

/// Which ACLs: each field unset matches anything (Kafka's filters).
pub use sluice_proto::controller::{AclFilter, ClientQuota, TokenInfo};

use crate::admin::Admin;
use crate::error::{ClientError, Result};

/// Kafka's default SCRAM iterations (`kafka-configs.sh` uses 4096).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// A user's SCRAM credentials: (mechanism, iterations) each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    pub user: String,
    pub credentials: Vec<(String, i32)>,
}

/// A token just created: `token` is shown this once.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub token: String,
    /// Unix ms; `None`: never.
    pub expires_ms: Option<i64>,
}

fn to_pb(b: &AclBinding) -> PbBinding {
    PbBinding {
        resource_type: b.resource_type.as_str().into(),
        pattern_type: b.pattern_type.as_str().into(),
        resource_name: b.resource_name.clone(),
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation.as_str().into(),
        permission: b.permission.as_str().into(),
    }
}

fn from_pb(b: &PbBinding) -> Result<AclBinding> {
    let bad = |e: sluice_auth::AuthError| {
        ClientError::api(
            ErrorCode::UnknownServerError,
            format!("an ACL the controller sent: {e}"),
        )
    };
    Ok(AclBinding {
        resource_type: b.resource_type.parse().map_err(bad)?,
        pattern_type: b.pattern_type.parse().map_err(bad)?,
        resource_name: b.resource_name.clone(),
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation.parse().map_err(bad)?,
        permission: b.permission.parse().map_err(bad)?,
    })
}

fn entry(e: Option<&sluice_proto::common::Error>) -> Result<(), ClientError> {
    match ApiError::from_proto(e) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

impl Admin {
    /// Adds ACLs; each succeeds or fails on its own.
    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<Vec<Result<(), ClientError>>> {
        let req = CreateAclsRequest {
            creations: acls.iter().map(to_pb).collect(),
        };
        let resp = self
            .with_controller("create ACLs", |mut c| {
                let req = req.clone();
                async move { c.create_acls(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(resp.results.iter().map(|e| entry(Some(e))).collect())
    }

    /// The ACLs a filter matches.
    pub async fn describe_acls(&self, filter: AclFilter) -> Result<Vec<AclBinding>> {
        let req = DescribeAclsRequest {
            filter: Some(filter),
        };
        let resp = self
            .with_controller("describe ACLs", |mut c| {
                let req = req.clone();
                async move { c.describe_acls(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        resp.bindings.iter().map(from_pb).collect()
    }

    /// Removes the ACLs each filter matches; per filter, what it removed.
    pub async fn delete_acls(
        &self,
        filters: Vec<AclFilter>,
    ) -> Result<Vec<Result<Vec<AclBinding>, ClientError>>> {
        let req = DeleteAclsRequest { filters };
        let resp = self
            .with_controller("delete ACLs", |mut c| {
                let req = req.clone();
                async move { c.delete_acls(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(resp
            .results
            .iter()
            .map(|r| {
                entry(r.error.as_ref())?;
                r.deleted.iter().map(from_pb).collect()
            })
            .collect())
    }

    /// Sets `user`'s `mechanism` credential to `password`.
    pub async fn set_scram_password(
        &self,
        user: &str,
        mechanism: Mechanism,
        password: &str,
        iterations: u32,
    ) -> Result<()> {
        // Checks what the controller would (and draws the salt).
        let check = ScramCredential::new(mechanism, password, iterations)
            .map_err(|e| ClientError::api(ErrorCode::UnacceptableCredential, e.to_string()))?;
        let salted = mechanism.salt_password(password, &check.salt, iterations);
        let req = AlterUserScramCredentialsRequest {
            deletions: Vec::new(),
            upsertions: vec![ScramCredentialUpsertion {
                user: user.to_string(),
                mechanism: mechanism.name().into(),
                iterations: iterations as i32,
                salt: check.salt.into(),
                salted_password: salted.into(),
            }],
        };
        self.alter_scram(req).await
    }

    /// Removes `user`'s `mechanism` credential.
    pub async fn delete_scram(&self, user: &str, mechanism: Mechanism) -> Result<()> {
        let req = AlterUserScramCredentialsRequest {
            deletions: vec![ScramCredentialDeletion {
                user: user.to_string(),
                mechanism: mechanism.name().into(),
            }],
            upsertions: Vec::new(),
        };
        self.alter_scram(req).await
    }

    async fn alter_scram(&self, req: AlterUserScramCredentialsRequest) -> Result<()> {
        let resp = self
            .with_controller("alter SCRAM credentials", |mut c| {
                let req = req.clone();
                async move {
                    c.alter_user_scram_credentials(req)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await?;
        for r in &resp.results {
            entry(r.error.as_ref())?;
        }
        Ok(())
    }

    /// The users with SCRAM credentials (`users` empty: all of them).
    pub async fn describe_users(&self, users: &[String]) -> Result<Vec<UserCredentials>> {
        let req = DescribeUserScramCredentialsRequest {
            users: users.to_vec(),
        };
        let resp = self
            .with_controller("describe users", |mut c| {
                let req = req.clone();
                async move {
                    c.describe_user_scram_credentials(req)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await?;
        resp.users
            .iter()
            .map(|u| {
                entry(u.error.as_ref())?;
                Ok(UserCredentials {
                    user: u.user.clone(),
                    credentials: u
                        .credentials
                        .iter()
                        .map(|c| (c.mechanism.clone(), c.iterations))
                        .collect(),
                })
            })
            .collect()
    }

    /// Creates an API token acting as `principal` (`User:<name>`).
    pub async fn create_token(
        &self,
        principal: &str,
        expires_in: Option<std::time::Duration>,
        description: &str,
    ) -> Result<NewToken> {
        let req = CreateTokenRequest {
            principal: principal.to_string(),
            expires_in_ms: expires_in.map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64),
            description: description.to_string(),
        };
        let resp = self
            .with_controller("create a token", |mut c| {
                let req = req.clone();
                async move { c.create_token(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        entry(resp.error.as_ref())?;
        Ok(NewToken {
            id: resp.token_id,
            token: resp.token,
            expires_ms: (resp.expires_ms >= 0).then_some(resp.expires_ms),
        })
    }

    /// Revokes token `id`.
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        let req = RevokeTokenRequest {
            token_id: id.to_string(),
        };
        let resp = self
            .with_controller("revoke a token", |mut c| {
                let req = req.clone();
                async move { c.revoke_token(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        entry(resp.error.as_ref())
    }

    /// Every token (never the secrets).
    pub async fn describe_tokens(&self) -> Result<Vec<TokenInfo>> {
        let resp = self
            .with_controller("describe tokens", |mut c| async move {
                c.describe_tokens(DescribeTokensRequest {})
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
        Ok(resp.tokens)
    }

    /// Sets (`Some`) or removes (`None`) quota `key` (producer_byte_rate,
    /// consumer_byte_rate, request_percentage) of a user or client id
    /// (`entity_type` `user` or `client-id`; `name` `<default>` for the
    /// default).
    pub async fn alter_quota(
        &self,
        entity_type: &str,
        name: &str,
        key: &str,
        value: Option<f64>,
    ) -> Result<()> {
        let req = AlterClientQuotasRequest {
            alterations: vec![QuotaAlteration {
                entity: Some(QuotaEntity {
                    entity_type: entity_type.to_string(),
                    name: name.to_string(),
                }),
                key: key.to_string(),
                value,
            }],
        };
        let resp = self
            .with_controller("alter quotas", |mut c| {
                let req = req.clone();
                async move { c.alter_client_quotas(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        for r in &resp.results {
            entry(Some(r))?;
        }
        Ok(())
    }

    /// Every quota set.
    pub async fn describe_quotas(&self) -> Result<Vec<ClientQuota>> {
        let resp = self
            .with_controller("describe quotas", |mut c| async move {
                c.describe_client_quotas(DescribeClientQuotasRequest {})
                    .await
                    .map(|r| r.into_inner())
            })
            .await?;
        Ok(resp.quotas)
    }
}
