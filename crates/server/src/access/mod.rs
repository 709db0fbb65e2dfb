//! Who is calling and what they may do, for every service of a process.
//!
//! [`Access`] is the process's one view of it: the authorizer (ACLs and
//! super users, `sluice_auth`), the certificate-to-principal rules, and the
//! SCRAM credentials, followed from the metadata store ([`follow`]) so a
//! change applies everywhere within one watch event. Each face asks it in
//! one place: the gRPC front door ([`admit`], in every service's slot) and
//! the Kafka dispatcher; the request logic asks it per topic or group with
//! the names it parsed ([`Access::require`]).
//!
//! Without `authorizer.class.name` every request is allowed (Kafka without
//! an authorizer): checks are a branch, and a connection's certificate is
//! mapped to a principal once.

pub(crate) mod admit;
mod follow;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use sluice_auth::scram::{Mechanism, ScramCredential};
use sluice_auth::token::TokenRecord;
use sluice_auth::{
    AclBinding, Authorizer, Decision, MappingRules, Operation, Principal, ResourceType,
};
use sluice_tls::ConnInfo;
use sluice_types::{ApiError, ErrorCode};
use tokio::sync::watch;

use crate::config::ConfigError;
use crate::security::SecurityConfig;

pub use admit::{CLIENT_HOST_HEADER, CLIENT_ID_HEADER, ON_BEHALF_OF_HEADER};

/// The principal Sluice's own services act as when they call each other
/// within one process (see [`sluice_tls::is_own_connection`]).
pub const INTERNAL_USER: &str = "sluice-internal";

/// The tracing target of the audit log: every denied request and every
/// change to who may do what.
pub const AUDIT_TARGET: &str = "sluice::audit";

/// Who a request acts as, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    /// The client's address (no port), as ACL hosts name it.
    pub host: String,
    /// One of this process's own services (allowed everything).
    pub internal: bool,
    /// The API token the request came with: revoking it ends the request.
    pub token: Option<String>,
    /// The client id it gave (Kafka's header; gRPC's `sluice-client-id`),
    /// for client quotas.
    pub client_id: String,
}

impl Caller {
    pub fn anonymous(host: impl Into<String>) -> Self {
        Caller {
            principal: Principal::anonymous(),
            host: host.into(),
            internal: false,
            token: None,
            client_id: String::new(),
        }
    }

    pub fn user(principal: Principal, host: impl Into<String>) -> Self {
        Caller {
            principal,
            host: host.into(),
            internal: false,
            token: None,
            client_id: String::new(),
        }
    }

    /// This process's own services.
    pub fn internal() -> Self {
        Caller {
            principal: Principal::user(INTERNAL_USER),
            host: "127.0.0.1".into(),
            internal: true,
            token: None,
            client_id: String::new(),
        }
    }

    /// The caller of a gRPC request, as the front door identified it
    /// (anonymous when no front door ran, as in unit tests of a service).
    pub fn of<T>(req: &tonic::Request<T>) -> Caller {
        req.extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller::anonymous("unknown"))
    }

    /// Marks `req` (a service's call made for this caller, as a broker
    /// forwards a Kafka client's group and admin requests) so the service
    /// it reaches checks this caller's rights, not the forwarding
    /// service's. Honoured only from callers allowed `ClusterAction`.
    pub fn forward<T>(&self, req: &mut tonic::Request<T>) {
        if self.internal {
            return;
        }
        let md = req.metadata_mut();
        if let Ok(v) = self.principal.to_string().parse() {
            md.insert(ON_BEHALF_OF_HEADER, v);
        }
        if let Ok(v) = self.host.parse() {
            md.insert(CLIENT_HOST_HEADER, v);
        }
        if let Ok(v) = self.client_id.parse() {
            md.insert(CLIENT_ID_HEADER, v);
        }
    }
}

/// The process's access control (cheap to clone).
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: no authorizer configured, everything allowed.
    authorizer: Option<Authorizer>,
    mapping: MappingRules,
    /// The bindings as stored, for DescribeAcls.
    acls: RwLock<Arc<Vec<AclBinding>>>,
    scram: RwLock<HashMap<(String, Mechanism), ScramCredential>>,
    tokens: RwLock<HashMap<String, TokenRecord>>,
    quotas: crate::quota::Quotas,
    /// Passwords already checked (PBKDF2 costs milliseconds; gRPC sends the
    /// password with every request): SHA-256 of user and password to the
    /// StoredKey it matched, valid while the credential is unchanged.
    checked: parking_lot::Mutex<HashMap<[u8; 32], Vec<u8>>>,
    /// Bumped on every change read from the store (tokens revoked).
    changes: watch::Sender<u64>,
    /// `Some`: the listener is `SASL_*://`, and these mechanisms are
    /// offered (Kafka's names).
    sasl: Option<Vec<String>>,
    /// Turns true once the store has been read (a service is not ready
    /// before, or it would refuse everything it should allow).
    loaded: watch::Sender<bool>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

impl Default for Access {
    fn default() -> Self {
        Access::open()
    }
}

impl Access {
    /// No authorizer: every request allowed, certificates still mapped to
    /// principals (for logs and SASL).
    pub fn open() -> Self {
        Access::build(None, MappingRules::default(), None)
    }

    /// From a service's security settings, for its listener (`listeners`).
    pub fn from_config(config: &SecurityConfig, listeners: &str) -> Result<Self, ConfigError> {
        let mapping = MappingRules::parse(&config.principal_mapping)
            .map_err(|e| ConfigError::invalid("ssl.principal.mapping.rules", e.to_string()))?;
        let protocol = sluice_tls::SecurityProtocol::of_listener("listeners", listeners)
            .map_err(|e| ConfigError::invalid("listeners", e.to_string()))?;
        let sasl = if protocol.is_sasl() {
            Some(sasl_mechanisms(&config.sasl_mechanisms)?)
        } else {
            None
        };
        if config.authorizer.trim().is_empty() {
            return Ok(Access::build(None, mapping, sasl));
        }
        let mut supers = Vec::new();
        for s in config
            .super_users
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let p = Principal::parse(s)
                .map_err(|e| ConfigError::invalid("super.users", format!("{s:?}: {e}")))?;
            supers.push(p);
        }
        let authorizer = Authorizer::new(supers, config.allow_if_no_acl);
        Ok(Access::build(Some(authorizer), mapping, sasl))
    }

    fn build(
        authorizer: Option<Authorizer>,
        mapping: MappingRules,
        sasl: Option<Vec<String>>,
    ) -> Self {
        Access {
            inner: Arc::new(Inner {
                authorizer,
                mapping,
                sasl,
                acls: RwLock::new(Arc::new(Vec::new())),
                scram: RwLock::new(HashMap::new()),
                tokens: RwLock::new(HashMap::new()),
                quotas: Default::default(),
                checked: parking_lot::Mutex::new(HashMap::new()),
                changes: watch::Sender::new(0),
                loaded: watch::Sender::new(false),
            }),
        }
    }

    /// The client quotas and the rates measured against them.
    pub fn quotas(&self) -> &crate::quota::Quotas {
        &self.inner.quotas
    }

    /// The SASL mechanisms Kafka clients must authenticate with first
    /// (`None`: the listener is not `SASL_*://`).
    pub fn sasl_mechanisms(&self) -> Option<&[String]> {
        self.inner.sasl.as_deref()
    }

    /// Whether ACLs are enforced.
    pub fn enabled(&self) -> bool {
        self.inner.authorizer.is_some()
    }

    /// Who a connection is before any credential it sends: this process's
    /// own services, the client certificate's principal, or anonymous.
    pub fn identify(&self, conn: Option<&ConnInfo>) -> Caller {
        let host = conn
            .and_then(|c| c.remote)
            // An IPv4 client on a dual-stack listener is ::ffff:a.b.c.d;
            // ACLs name it a.b.c.d.
            .map(|a| a.ip().to_canonical().to_string())
            .unwrap_or_else(|| "unknown".into());
        let Some(conn) = conn else {
            return Caller::anonymous(host);
        };
        if let (Some(remote), Some(local)) = (conn.remote, conn.local)
            && sluice_tls::is_own_connection(remote, local)
        {
            return Caller::internal();
        }
        // The certificate is read and mapped once per connection.
        let name = conn.principal.get_or_init(|| {
            let leaf = conn.peer_certificates.as_ref().and_then(|c| c.first())?;
            match sluice_auth::mapping::subject_dn(leaf.as_ref()) {
                Ok(dn) => {
                    let name = self.inner.mapping.apply(&dn);
                    if name.is_none() {
                        tracing::warn!(
                            subject = dn,
                            "no ssl.principal.mapping.rules rule matches the client certificate; treating it as anonymous"
                        );
                    }
                    name
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the client certificate's subject");
                    None
                }
            }
        });
        if let Some(name) = name {
            return Caller::user(Principal::user(name.clone()), host);
        }
        Caller::anonymous(host)
    }

    /// The decision on one operation, with a line in the audit log when
    /// it is a denial.
    pub fn decide(&self, caller: &Caller, op: Operation, rtype: ResourceType, name: &str) -> bool {
        let Some(authorizer) = &self.inner.authorizer else {
            return true;
        };
        if caller.internal {
            return true;
        }
        let decision = authorizer.authorize(&caller.principal, &caller.host, op, rtype, name);
        if !decision.allowed() {
            audit_denied(caller, op, rtype, name, decision);
        }
        decision.allowed()
    }

    /// Like [`Access::decide`] without the audit line: for filtering what a
    /// listing shows (a topic left out of "all topics" is not a denial).
    pub fn allows(&self, caller: &Caller, op: Operation, rtype: ResourceType, name: &str) -> bool {
        match &self.inner.authorizer {
            None => true,
            Some(_) if caller.internal => true,
            Some(a) => a
                .authorize(&caller.principal, &caller.host, op, rtype, name)
                .allowed(),
        }
    }

    /// [`Access::decide`] as a result with Kafka's code for the resource.
    pub fn require(
        &self,
        caller: &Caller,
        op: Operation,
        rtype: ResourceType,
        name: &str,
    ) -> Result<(), ApiError> {
        if self.decide(caller, op, rtype, name) {
            return Ok(());
        }
        Err(denied(caller, op, rtype, name))
    }

    /// `op` on the cluster.
    pub fn require_cluster(&self, caller: &Caller, op: Operation) -> Result<(), ApiError> {
        self.require(
            caller,
            op,
            ResourceType::Cluster,
            sluice_auth::acl::CLUSTER_NAME,
        )
    }

    /// May the caller do `op` on some resource of `rtype` (KIP-679's check
    /// for idempotent producers)?
    pub fn allows_any(&self, caller: &Caller, op: Operation, rtype: ResourceType) -> bool {
        match &self.inner.authorizer {
            None => true,
            Some(_) if caller.internal => true,
            Some(a) => a.authorize_any(&caller.principal, &caller.host, op, rtype),
        }
    }

    /// The ACLs as stored (DescribeAcls filters them).
    pub fn acls(&self) -> Arc<Vec<AclBinding>> {
        self.inner.acls.read().clone()
    }

    /// A user's SCRAM credential for `mechanism`.
    pub fn credential(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.inner
            .scram
            .read()
            .get(&(user.to_string(), mechanism))
            .cloned()
    }

    /// The users with a credential, and their mechanisms.
    pub fn users(&self) -> Vec<(String, Vec<ScramCredential>)> {
        let mut by_user: std::collections::BTreeMap<String, Vec<ScramCredential>> =
            Default::default();
        for ((user, _), c) in self.inner.scram.read().iter() {
            by_user.entry(user.clone()).or_default().push(c.clone());
        }
        by_user.into_iter().collect()
    }

    /// Resolves once the ACLs and credentials were read from the store.
    pub async fn wait_loaded(&self) {
        let mut rx = self.inner.loaded.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    pub fn is_loaded(&self) -> bool {
        *self.inner.loaded.borrow()
    }

    fn install(
        &self,
        acls: Vec<AclBinding>,
        scram: HashMap<(String, Mechanism), ScramCredential>,
        tokens: HashMap<String, TokenRecord>,
    ) {
        if let Some(a) = &self.inner.authorizer {
            for bad in a.set_acls(&acls) {
                tracing::warn!(acl = %bad, "ignoring an ACL that does not validate");
            }
        }
        *self.inner.acls.write() = Arc::new(acls);
        *self.inner.scram.write() = scram;
        *self.inner.tokens.write() = tokens;
        self.inner.changes.send_modify(|n| *n += 1);
        self.inner.loaded.send_replace(true);
    }

    /// The caller a request's `authorization` header names: a token
    /// (`Bearer`) or a SCRAM user's password (`Basic`). `None` when the
    /// request carries none; an error (SASL_AUTHENTICATION_FAILED) when it
    /// carries one that is refused.
    pub fn authenticate(&self, header: &str, host: &str) -> Option<Result<Caller, ApiError>> {
        let refused = |mechanism: &str, user: &str, why: &str| {
            audit_authentication_failed(host, mechanism, user, why);
            Err(ApiError::new(
                ErrorCode::SaslAuthenticationFailed,
                format!("authentication failed ({mechanism}): invalid credentials"),
            ))
        };
        let (scheme, value) = header.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            let Ok((id, secret)) = sluice_auth::token::parse(value) else {
                return Some(refused("token", "", "not a Sluice token"));
            };
            let record = self.inner.tokens.read().get(id).cloned();
            let Some(record) = record else {
                return Some(refused("token", id, "unknown or revoked token"));
            };
            if !record.accepts(secret, sluice_types::now_ms()) {
                return Some(refused("token", id, "wrong secret or expired"));
            }
            return Some(match Principal::parse(&record.principal) {
                Ok(p) => {
                    let mut caller = Caller::user(p, host);
                    caller.token = Some(id.to_string());
                    Ok(caller)
                }
                Err(_) => refused("token", id, "the token's principal does not parse"),
            });
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            // Not ours (a gateway's JWT, say): the request is identified by
            // its connection, as it was before Sluice read this header.
            return None;
        }
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
            return Some(refused("PLAIN", "", "malformed Basic credentials"));
        };
        if self.check_password(user, password) {
            Some(Ok(Caller::user(Principal::user(user), host)))
        } else {
            Some(refused("PLAIN", user, "unknown user or wrong password"))
        }
    }

    /// A user's password against any of its SCRAM credentials (SASL/PLAIN
    /// and gRPC Basic), remembering a success while that credential stays
    /// the same. PBKDF2 costs milliseconds of CPU: it runs off the async
    /// workers, and an unknown user costs the same as a wrong password (so
    /// the time taken does not tell whether a user exists).
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        let key = sha256(&[user.as_bytes(), b"\0", password.as_bytes()]);
        let credentials: Vec<ScramCredential> = Mechanism::ALL
            .iter()
            .filter_map(|m| self.credential(user, *m))
            .collect();
        if let Some(stored) = self.inner.checked.lock().get(&key)
            && credentials.iter().any(|c| &c.stored_key == stored)
        {
            return true;
        }
        let found = off_worker(|| {
            if credentials.is_empty() {
                let _ = unknown_user().verify_password(password);
                return None;
            }
            credentials
                .iter()
                .find(|c| c.verify_password(password))
                .map(|c| c.stored_key.clone())
        });
        let Some(stored) = found else {
            return false;
        };
        let mut checked = self.inner.checked.lock();
        if checked.len() > 10_000 {
            checked.clear();
        }
        checked.insert(key, stored);
        true
    }

    /// Resolves once token `id` is no longer valid (revoked or expired): a
    /// request made with it ends then.
    pub async fn token_gone(&self, id: &str) {
        let mut rx = self.inner.changes.subscribe();
        loop {
            let expires = match self.inner.tokens.read().get(id) {
                None => return,
                Some(t) => t.expires_ms,
            };
            let wait = expires.map(|e| (e - sluice_types::now_ms()).max(0) as u64);
            if wait == Some(0) {
                return;
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { std::future::pending::<()>().await },
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait.unwrap_or(u64::MAX / 4))) => return,
            }
        }
    }
}

/// One request's rights: the caller and the process's access control, as
/// the request logic of either face asks them with the names it parsed.
#[derive(Clone, Debug)]
pub struct Rights {
    access: Access,
    caller: Caller,
}

impl Rights {
    pub fn new(access: &Access, caller: Caller) -> Self {
        Rights {
            access: access.clone(),
            caller,
        }
    }

    /// The rights of a gRPC request's caller ([`Caller::of`]).
    pub fn of<T>(access: &Access, req: &tonic::Request<T>) -> Self {
        Rights::new(access, Caller::of(req))
    }

    /// Everything allowed (a service's own work, unit tests).
    pub fn internal() -> Self {
        Rights::new(&Access::open(), Caller::internal())
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// These rights for a request that named `client_id` (Kafka's header).
    pub fn with_client_id(&self, client_id: &str) -> Rights {
        let mut r = self.clone();
        r.caller.client_id = client_id.to_string();
        r
    }

    /// Records `amount` against the caller's quota of `kind`; how long its
    /// answer must be held (zero within the quota). This process's own
    /// services have no quota.
    /// (`amount` is only computed when some quota is set.)
    pub fn quota(
        &self,
        kind: crate::quota::QuotaKind,
        amount: impl FnOnce() -> f64,
    ) -> std::time::Duration {
        let quotas = self.access.quotas();
        if self.caller.internal || quotas.is_empty() {
            return std::time::Duration::ZERO;
        }
        quotas.record(
            kind,
            self.caller.principal.name(),
            &self.caller.client_id,
            amount(),
        )
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    pub fn topic(&self, op: Operation, name: &str) -> Result<(), ApiError> {
        self.access
            .require(&self.caller, op, ResourceType::Topic, name)
    }

    pub fn group(&self, op: Operation, name: &str) -> Result<(), ApiError> {
        self.access
            .require(&self.caller, op, ResourceType::Group, name)
    }

    pub fn cluster(&self, op: Operation) -> Result<(), ApiError> {
        self.access.require_cluster(&self.caller, op)
    }

    /// Whether the caller may `op` the topic, with no audit line (to pick
    /// what to do before the audited check refuses it).
    pub fn may_topic(&self, op: Operation, name: &str) -> bool {
        self.access
            .allows(&self.caller, op, ResourceType::Topic, name)
    }

    /// Whether a listing shows this topic to the caller (no audit line: a
    /// topic left out of "all topics" is not a refused request).
    pub fn sees_topic(&self, name: &str) -> bool {
        self.access
            .allows(&self.caller, Operation::Describe, ResourceType::Topic, name)
    }

    pub fn sees_group(&self, name: &str) -> bool {
        self.access
            .allows(&self.caller, Operation::Describe, ResourceType::Group, name)
    }

    /// `op` on the cluster, without an audit line (for "the cluster, or
    /// else each resource" rules such as CreateTopics).
    pub fn has_cluster(&self, op: Operation) -> bool {
        self.access.allows(
            &self.caller,
            op,
            ResourceType::Cluster,
            sluice_auth::acl::CLUSTER_NAME,
        )
    }

    /// KIP-679: an idempotent producer needs `IdempotentWrite` on the
    /// cluster or `Write` on some topic.
    pub fn idempotent_producer(&self) -> Result<(), ApiError> {
        if self.has_cluster(Operation::IdempotentWrite)
            || self
                .access
                .allows_any(&self.caller, Operation::Write, ResourceType::Topic)
        {
            return Ok(());
        }
        self.cluster(Operation::IdempotentWrite)
    }

    /// Writing to (or deleting records of) an internal topic such as
    /// `__consumer_offsets` is for Sluice's services only: a client that
    /// could write there could forge offsets and group records. With ACLs
    /// off every caller may (services and clients look alike then).
    pub fn write_internal(&self, topic: &str) -> Result<(), ApiError> {
        if !sluice_types::names::is_internal_topic(topic)
            || self.caller.internal
            || self.has_cluster(Operation::ClusterAction)
        {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::InvalidTopicException,
            format!("{topic} is an internal topic: only Sluice's services write to it"),
        ))
    }

    /// CreateTopics' rule: `Create` on the cluster, or on the topic.
    pub fn create_topic(&self, name: &str) -> Result<(), ApiError> {
        if self.has_cluster(Operation::Create) {
            return Ok(());
        }
        self.topic(Operation::Create, name)
    }
}

/// A credential no user has, checked when the user is unknown so that
/// refusing one costs what refusing a wrong password does.
fn unknown_user() -> &'static ScramCredential {
    static CREDENTIAL: std::sync::LazyLock<ScramCredential> = std::sync::LazyLock::new(|| {
        ScramCredential::new(Mechanism::ScramSha256, "no such user", 4096)
            .expect("a valid credential")
    });
    &CREDENTIAL
}

/// Runs CPU-heavy `f` without stalling the other tasks of an async worker
/// (on a multi-threaded runtime; inline elsewhere, as in unit tests).
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().try_into().expect("32 bytes")
}

/// Parses `sasl.enabled.mechanisms`.
fn sasl_mechanisms(value: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for m in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let m = m.to_ascii_uppercase();
        if m != "PLAIN" && Mechanism::parse(&m).is_none() {
            return Err(ConfigError::invalid(
                "sasl.enabled.mechanisms",
                format!("{m} is not offered: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN"),
            ));
        }
        out.push(m);
    }
    if out.is_empty() {
        return Err(ConfigError::invalid(
            "sasl.enabled.mechanisms",
            "a SASL listener needs at least one mechanism",
        ));
    }
    Ok(out)
}

/// Kafka's code for a denial on a resource of `rtype`.
pub fn denied(caller: &Caller, op: Operation, rtype: ResourceType, name: &str) -> ApiError {
    let code = match rtype {
        ResourceType::Topic => ErrorCode::TopicAuthorizationFailed,
        ResourceType::Group => ErrorCode::GroupAuthorizationFailed,
        ResourceType::Cluster | ResourceType::TransactionalId => {
            ErrorCode::ClusterAuthorizationFailed
        }
    };
    let what = match rtype {
        ResourceType::Cluster => "the cluster".to_string(),
        _ => format!("{rtype} {name:?}"),
    };
    ApiError::new(code, format!("{} may not {op} {what}", caller.principal))
}

fn audit_denied(caller: &Caller, op: Operation, rtype: ResourceType, name: &str, why: Decision) {
    tracing::info!(
        target: AUDIT_TARGET,
        event = "denied",
        principal = %caller.principal,
        host = %caller.host,
        operation = %op,
        resource_type = %rtype,
        resource = name,
        reason = ?why,
    );
    metrics::counter!(
        "sluice_authorization_denied_total",
        "operation" => op.as_str(),
        "resource_type" => rtype.as_str(),
    )
    .increment(1);
}

/// An audit line for a failed authentication (a bad password, an unknown
/// user: the line does not say which, as the client is not told).
pub fn audit_authentication_failed(host: &str, mechanism: &str, user: &str, reason: &str) {
    tracing::info!(
        target: AUDIT_TARGET,
        event = "authentication-failed",
        host,
        mechanism,
        user,
        reason,
    );
    // A fixed label set: the mechanism text can come from a client.
    let label: &'static str = match mechanism {
        "token" => "token",
        "PLAIN" => "PLAIN",
        "SCRAM-SHA-256" => "SCRAM-SHA-256",
        "SCRAM-SHA-512" => "SCRAM-SHA-512",
        _ => "other",
    };
    metrics::counter!("sluice_authentication_failed_total", "mechanism" => label).increment(1);
}

/// An audit line for a change to who may do what (ACLs, users) or to the
/// cluster (topics, configs), by `caller`.
pub fn audit_change(caller: &Caller, action: &str, detail: &str) {
    tracing::info!(
        target: AUDIT_TARGET,
        event = "change",
        principal = %caller.principal,
        host = %caller.host,
        action,
        detail,
    );
}

pub use follow::follow;
