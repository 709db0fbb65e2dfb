//! A node with SASL_PLAINTEXT and ACLs on (`User:admin` a super user), and
//! clients of it, shared by the access tests.

use std::net::SocketAddr;

use sluice_auth::scram::Mechanism;
use sluice_auth::{AclBinding, Operation, PatternType, Permission, ResourceType};
use sluice_client::cluster::{Channel, Credentials};
use sluice_client::{Admin, ClientConfig};
use sluice_standalone::{Standalone, StandaloneOptions};
use tonic::service::interceptor::InterceptedService;

pub async fn node(dir: &std::path::Path) -> Standalone {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut opts = StandaloneOptions::new(dir.join("node"), addr);
    opts.listen_protocol = sluice_tls::SecurityProtocol::SaslPlaintext;
    opts.broker.security.authorizer = "kafka.security.authorizer.AclAuthorizer".into();
    opts.broker.security.super_users = "User:admin".into();
    let node = Standalone::start(opts).await.unwrap();
    // The node's own connections are trusted: the first administrator.
    let own = Admin::new(node.client.clone().as_service()).unwrap();
    own.set_scram_password("admin", Mechanism::ScramSha256, "admin-secret", 4096)
        .await
        .unwrap();
    node
}

pub fn config(node: &Standalone, user: &str, password: &str) -> ClientConfig {
    ClientConfig::new(&node.addr.to_string())
        .with("security.protocol", "SASL_PLAINTEXT")
        .unwrap()
        .with("sasl.username", user)
        .unwrap()
        .with("sasl.password", password)
        .unwrap()
        .with("request.timeout.ms", "5000")
        .unwrap()
        .with("delivery.timeout.ms", "5000")
        .unwrap()
        .with("retries", "0")
        .unwrap()
}

pub fn admin(node: &Standalone) -> Admin {
    Admin::new(config(node, "admin", "admin-secret")).unwrap()
}

pub fn channel(node: &Standalone, config: &ClientConfig) -> Channel {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr)).unwrap();
    InterceptedService::new(endpoint.connect_lazy(), Credentials::of(config).unwrap())
}

pub fn acl(rtype: ResourceType, name: &str, principal: &str, op: Operation) -> AclBinding {
    AclBinding {
        resource_type: rtype,
        pattern_type: PatternType::Literal,
        resource_name: name.into(),
        principal: principal.into(),
        host: "*".into(),
        operation: op,
        permission: Permission::Allow,
    }
}

pub async fn setup_user(node: &Standalone, user: &str) -> ClientConfig {
    admin(node)
        .set_scram_password(user, Mechanism::ScramSha512, "pw-of-nobody", 4096)
        .await
        .unwrap();
    config(node, user, "pw-of-nobody")
}
