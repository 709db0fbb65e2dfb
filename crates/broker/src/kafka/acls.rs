//! Access on the Kafka face: the front door every API passes (the access
//! table's cluster-level requirement, answered with the API's own refusal),
//! and the ACL and SCRAM credential APIs (`kafka-acls.sh`,
//! `kafka-configs.sh --entity-type users`), forwarded to the controller's
//! gRPC API as the broker's other admin requests are.

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeClusterResponse, DescribeLogDirsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, RequestKind,
    ResponseKind,
};
use sluice_auth::table;
use sluice_proto::controller as pb;
use sluice_server::access::Rights;

use super::dispatch::Outcome;
use super::{api_code, code, message, str_bytes};
use crate::BrokerService;
use crate::error::{BrokerError, ControllerCall, Peer};

/// The front door: `None` lets the request through; otherwise the
/// answer that refuses it.
pub(super) fn front_door(
    rights: &Rights,
    api: ApiKey,
    body: &RequestKind,
    _version: i16,
) -> Option<Outcome> {
    // Without ACLs every request is allowed: nothing to look up.
    if !rights.access().enabled() {
        return None;
    }
    let name = format!("{api:?}");
    let Some(requirement) = table::kafka(&name) else {
        tracing::error!(api = name, "a Kafka API with no access entry; closing");
        return Some(Outcome::Close("an API with no access rule"));
    };
    let op = requirement.front_door()?;
    let e = rights.cluster(op).err()?;
    let code = e.code as i16;
    let msg = Some(str_bytes(e.message));
    let resp = match body {
        RequestKind::DescribeLogDirs(_) => {
            ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_error_code(code))
        }
        RequestKind::DescribeCluster(_) => ResponseKind::DescribeCluster(
            DescribeClusterResponse::default()
                .with_error_code(code)
                .with_error_message(msg),
        ),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(
            CreateAclsResponse::default().with_results(
                r.creations
                    .iter()
                    .map(|_| {
                        AclCreationResult::default()
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    })
                    .collect(),
            ),
        ),
        RequestKind::DescribeAcls(_) => ResponseKind::DescribeAcls(
            DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(msg),
        ),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(
            DeleteAclsResponse::default().with_filter_results(
                r.filters
                    .iter()
                    .map(|_| {
                        DeleteAclsFilterResult::default()
                            .with_error_code(code)
                            .with_error_message(msg.clone())
                    })
                    .collect(),
            ),
        ),
        RequestKind::DescribeUserScramCredentials(_) => ResponseKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(code)
                .with_error_message(msg),
        ),
        RequestKind::AlterUserScramCredentials(r) => {
            let mut users: Vec<_> = r
                .deletions
                .iter()
                .map(|d| d.name.clone())
                .chain(r.upsertions.iter().map(|u| u.name.clone()))
                .collect();
            let mut seen = std::collections::HashSet::new();
            users.retain(|u| seen.insert(u.clone()));
            ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(
                    users
                        .into_iter()
                        .map(|u| {
                            AlterUserScramCredentialsResult::default()
                                .with_user(u)
                                .with_error_code(code)
                                .with_error_message(msg.clone())
                        })
                        .collect(),
                ),
            )
        }
        // A cluster-level requirement on an API without a refusal written
        // here: close rather than serve it unchecked.
        _ => return Some(Outcome::Close("refused")),
    };
    Some(Outcome::Respond(Box::new(resp)))
}

// Kafka's numeric codes for the ACL enums (org.apache.kafka.common.acl).
const RESOURCE_TYPES: &[(i8, &str)] = &[
    (2, "Topic"),
    (3, "Group"),
    (4, "Cluster"),
    (5, "TransactionalId"),
];
const PATTERN_TYPES: &[(i8, &str)] = &[(1, "ANY"), (2, "MATCH"), (3, "LITERAL"), (4, "PREFIXED")];
const OPERATIONS: &[(i8, &str)] = &[
    (2, "All"),
    (3, "Read"),
    (4, "Write"),
    (5, "Create"),
    (6, "Delete"),
    (7, "Alter"),
    (8, "Describe"),
    (9, "ClusterAction"),
    (10, "DescribeConfigs"),
    (11, "AlterConfigs"),
    (12, "IdempotentWrite"),
];
const PERMISSIONS: &[(i8, &str)] = &[(2, "Deny"), (3, "Allow")];
const ANY: i8 = 1;
const SCRAM: &[(i8, &str)] = &[(1, "SCRAM-SHA-256"), (2, "SCRAM-SHA-512")];

fn name_of(table: &[(i8, &'static str)], v: i8) -> Option<&'static str> {
    table.iter().find(|(c, _)| *c == v).map(|(_, n)| *n)
}

fn code_of(table: &[(i8, &str)], name: &str) -> i8 {
    table
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map_or(0, |(c, _)| *c)
}

/// A value of a binding (no ANY allowed); unknown codes pass through as
/// text so the controller's validation names them.
fn value(table: &[(i8, &'static str)], v: i8) -> String {
    name_of(table, v).map_or_else(|| format!("unknown({v})"), str::to_string)
}

/// A filter field: ANY is no filter.
fn filter_value(table: &[(i8, &'static str)], v: i8) -> Option<String> {
    (v != ANY).then(|| value(table, v))
}

fn binding_out(b: &pb::AclBinding) -> (i8, String, i8, String, String, i8, i8) {
    (
        code_of(RESOURCE_TYPES, &b.resource_type),
        b.resource_name.clone(),
        code_of(PATTERN_TYPES, &b.pattern_type),
        b.principal.clone(),
        b.host.clone(),
        code_of(OPERATIONS, &b.operation),
        code_of(PERMISSIONS, &b.permission),
    )
}

/// Calls the active controller for the client (its rights, not the
/// broker's, are checked there).
async fn call<T, R, F, Fut>(
    svc: &BrokerService,
    rights: &Rights,
    req: T,
    f: F,
) -> Result<R, BrokerError>
where
    F: FnOnce(
        sluice_proto::controller::controller_client::ControllerClient<tonic::transport::Channel>,
        tonic::Request<T>,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
{
    let client = svc.controller(ControllerCall::ForwardAdmin).await?;
    let mut req = tonic::Request::new(req);
    rights.caller().forward(&mut req);
    f(client, req)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| BrokerError::forwarded(Peer::Controller, &s))
}

pub(super) async fn create(
    svc: &BrokerService,
    rights: &Rights,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let creations = req
        .creations
        .iter()
        .map(|c| pb::AclBinding {
            resource_type: value(RESOURCE_TYPES, c.resource_type),
            pattern_type: value(PATTERN_TYPES, c.resource_pattern_type),
            resource_name: c.resource_name.to_string(),
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: value(OPERATIONS, c.operation),
            permission: value(PERMISSIONS, c.permission_type),
        })
        .collect();
    let n = req.creations.len();
    let results = match call(
        svc,
        rights,
        pb::CreateAclsRequest { creations },
        |mut c, r| async move { c.create_acls(r).await },
    )
    .await
    {
        Ok(r) => r
            .results
            .iter()
            .map(|e| {
                AclCreationResult::default()
                    .with_error_code(code(Some(e)))
                    .with_error_message(message(Some(e)))
            })
            .collect(),
        Err(e) => (0..n)
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(api_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())))
            })
            .collect(),
    };
    CreateAclsResponse::default().with_results(results)
}

fn filter(
    resource_type: i8,
    name: Option<&str>,
    pattern: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> pb::AclFilter {
    pb::AclFilter {
        resource_type: filter_value(RESOURCE_TYPES, resource_type),
        pattern_type: filter_value(PATTERN_TYPES, pattern),
        resource_name: name.map(str::to_string),
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation: filter_value(OPERATIONS, operation),
        permission: filter_value(PERMISSIONS, permission),
    }
}

pub(super) async fn describe(
    svc: &BrokerService,
    rights: &Rights,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let f = filter(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    );
    let asked = pb::DescribeAclsRequest { filter: Some(f) };
    match call(svc, rights, asked, |mut c, r| async move {
        c.describe_acls(r).await
    })
    .await
    {
        Err(e) => DescribeAclsResponse::default()
            .with_error_code(api_code(&e))
            .with_error_message(Some(str_bytes(e.to_string()))),
        Ok(r) => {
            // Kafka groups the bindings by resource pattern.
            let mut resources: Vec<DescribeAclsResource> = Vec::new();
            for b in &r.bindings {
                let (rt, name, pt, principal, host, op, perm) = binding_out(b);
                let acl = AclDescription::default()
                    .with_principal(str_bytes(principal))
                    .with_host(str_bytes(host))
                    .with_operation(op)
                    .with_permission_type(perm);
                match resources.iter_mut().find(|r| {
                    r.resource_type == rt && r.pattern_type == pt && *r.resource_name == *name
                }) {
                    Some(r) => r.acls.push(acl),
                    None => resources.push(
                        DescribeAclsResource::default()
                            .with_resource_type(rt)
                            .with_resource_name(str_bytes(name))
                            .with_pattern_type(pt)
                            .with_acls(vec![acl]),
                    ),
                }
            }
            DescribeAclsResponse::default().with_resources(resources)
        }
    }
}

pub(super) async fn delete(
    svc: &BrokerService,
    rights: &Rights,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let filters: Vec<pb::AclFilter> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let n = filters.len();
    let results = match call(
        svc,
        rights,
        pb::DeleteAclsRequest { filters },
        |mut c, r| async move { c.delete_acls(r).await },
    )
    .await
    {
        Ok(r) => r
            .results
            .iter()
            .map(|f| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code(f.error.as_ref()))
                    .with_error_message(message(f.error.as_ref()))
                    .with_matching_acls(
                        f.deleted
                            .iter()
                            .map(|b| {
                                let (rt, name, pt, principal, host, op, perm) = binding_out(b);
                                DeleteAclsMatchingAcl::default()
                                    .with_resource_type(rt)
                                    .with_resource_name(str_bytes(name))
                                    .with_pattern_type(pt)
                                    .with_principal(str_bytes(principal))
                                    .with_host(str_bytes(host))
                                    .with_operation(op)
                                    .with_permission_type(perm)
                            })
                            .collect(),
                    )
            })
            .collect(),
        Err(e) => (0..n)
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(api_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())))
            })
            .collect(),
    };
    DeleteAclsResponse::default().with_filter_results(results)
}

pub(super) async fn describe_scram(
    svc: &BrokerService,
    rights: &Rights,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users = req
        .users
        .unwrap_or_default()
        .iter()
        .map(|u| u.name.to_string())
        .collect();
    let asked = pb::DescribeUserScramCredentialsRequest { users };
    match call(svc, rights, asked, |mut c, r| async move {
        c.describe_user_scram_credentials(r).await
    })
    .await
    {
        Err(e) => DescribeUserScramCredentialsResponse::default()
            .with_error_code(api_code(&e))
            .with_error_message(Some(str_bytes(e.to_string()))),
        Ok(r) => DescribeUserScramCredentialsResponse::default().with_results(
            r.users
                .iter()
                .map(|u| {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(str_bytes(u.user.clone()))
                        .with_error_code(code(u.error.as_ref()))
                        .with_error_message(message(u.error.as_ref()))
                        .with_credential_infos(
                            u.credentials
                                .iter()
                                .map(|c| {
                                    CredentialInfo::default()
                                        .with_mechanism(code_of(SCRAM, &c.mechanism))
                                        .with_iterations(c.iterations)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

pub(super) async fn alter_scram(
    svc: &BrokerService,
    rights: &Rights,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let asked = pb::AlterUserScramCredentialsRequest {
        deletions: req
            .deletions
            .iter()
            .map(|d| pb::ScramCredentialDeletion {
                user: d.name.to_string(),
                mechanism: value(SCRAM, d.mechanism),
            })
            .collect(),
        upsertions: req
            .upsertions
            .iter()
            .map(|u| pb::ScramCredentialUpsertion {
                user: u.name.to_string(),
                mechanism: value(SCRAM, u.mechanism),
                iterations: u.iterations,
                salt: u.salt.clone(),
                salted_password: u.salted_password.clone(),
            })
            .collect(),
    };
    let mut users: Vec<String> = asked
        .deletions
        .iter()
        .map(|d| d.user.clone())
        .chain(asked.upsertions.iter().map(|u| u.user.clone()))
        .collect();
    let mut seen = std::collections::HashSet::new();
    users.retain(|u| seen.insert(u.clone()));
    let results = match call(svc, rights, asked, |mut c, r| async move {
        c.alter_user_scram_credentials(r).await
    })
    .await
    {
        Ok(r) => r
            .results
            .iter()
            .map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(str_bytes(u.user.clone()))
                    .with_error_code(code(u.error.as_ref()))
                    .with_error_message(message(u.error.as_ref()))
            })
            .collect(),
        Err(e) => users
            .into_iter()
            .map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(str_bytes(u))
                    .with_error_code(api_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())))
            })
            .collect(),
    };
    AlterUserScramCredentialsResponse::default().with_results(results)
}
