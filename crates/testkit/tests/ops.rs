//! Operations against a real cluster of processes: health, reflection and
//! Prometheus metrics on every service, and a rolling restart under load.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_client::{Admin, GroupConsumer, NewTopic, Producer, ProducerRecord};
use sluice_testkit::{ClusterSpec, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn health(addr: &str) -> anyhow::Result<ServingStatus> {
    health_of(addr, "").await
}

async fn health_of(addr: &str, service: &str) -> anyhow::Result<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await?;
    Ok(r.into_inner().status())
}

async fn wait_serving(c: &TestCluster, name: &str) {
    let addr = c.grpc_addr(name).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match health(&addr).await {
            Ok(ServingStatus::Serving) => return,
            other if tokio::time::Instant::now() > deadline => {
                panic!("{name} not SERVING: {other:?}\n{}", c.logs_tail())
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One scrape, parsed; fails on anything that is not Prometheus text format.
async fn scrape(url: &str) -> prometheus_parse::Scrape {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.") && head[8..].starts_with(" 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// Sum of a metric's samples whose labels include every `(key, value)`.
fn sum(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for x in s.samples.iter().filter(|x| x.metric == name) {
        if labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)) {
            let v = match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => continue,
            };
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

fn metric(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(s, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"))
}

async fn produce(c: &TestCluster, topic: &str, partitions: usize, n: usize) {
    let producer = Producer::new(c.client_config().with("acks", "all").unwrap()).unwrap();
    let mut acks = Vec::new();
    for i in 0..n {
        acks.push(
            producer
                // Every partition, so every leader sees bytes in.
                .send(
                    ProducerRecord::new(topic, format!("record-{i}"))
                        .with_partition((i % partitions) as i32),
                )
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    producer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_reports_health_and_metrics_that_move_under_load() {
    let mut c = TestCluster::start(ClusterSpec {
        coordinators: 1,
        offsets_topic_num_partitions: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let names = c.process_names();
    for n in &names {
        wait_serving(&c, n).await;
    }
    // Brokers also answer the in-sync check rolling updates wait for.
    for b in ["broker-1", "broker-2", "broker-3"] {
        let addr = c.grpc_addr(b).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !matches!(
            health_of(&addr, "sluice.broker.v1.Broker.InSync").await,
            Ok(ServingStatus::Serving)
        ) {
            assert!(tokio::time::Instant::now() < deadline, "{b} never in sync");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("ops", 3, 3))
        .await
        .unwrap();
    produce(&c, "ops", 3, 300).await;
    // A group that reads a little and commits, so it has lag.
    let mut g = GroupConsumer::new(
        c.client_config()
            .with("group.id", "ops-group")
            .unwrap()
            .with("auto.offset.reset", "earliest")
            .unwrap()
            .with("enable.auto.commit", "false")
            .unwrap()
            .with("max.poll.records", "10")
            .unwrap(),
    )
    .unwrap();
    g.subscribe(&["ops"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while g.poll(Duration::from_millis(500)).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group read nothing"
        );
    }
    g.commit_sync().await.unwrap();

    // Gauges refresh every 5 s (10 s for group lag): scrape after that.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mut before = BTreeMap::new();
    for n in &names {
        before.insert(n.clone(), scrape(&c.metrics_url(n).unwrap()).await);
    }
    produce(&c, "ops", 3, 300).await;
    let group = [("group", "ops-group")];
    let lag_before = metric(
        &before["coordinator-1"],
        "sluice_consumer_group_lag",
        &group,
    );
    assert!(lag_before > 0.0, "the group has lag");
    // Group lag is refreshed every 10 s: wait for the next refresh.
    let co_url = c.metrics_url("coordinator-1").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let lag = sum(&scrape(&co_url).await, "sluice_consumer_group_lag", &group);
        if lag.is_some_and(|l| l > lag_before) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lag did not grow with the new records: {lag_before} -> {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    c.kill("broker-3").unwrap();
    // The kill is noticed after the 2 s lease; wait for the gauges to show it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut under = 0.0;
        for b in ["broker-1", "broker-2"] {
            let s = scrape(&c.metrics_url(b).unwrap()).await;
            under += sum(&s, "sluice_broker_under_replicated_partitions", &[]).unwrap_or(0.0);
        }
        if under > 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no under-replicated partitions after a kill\n{}",
            c.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The active controller's gauges refresh on their own 5 s timer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    'controller: loop {
        for ctl in ["controller-1", "controller-2"] {
            let s = scrape(&c.metrics_url(ctl).unwrap()).await;
            if sum(&s, "sluice_controller_live_brokers", &[]) == Some(2.0)
                && sum(&s, "sluice_controller_active", &[]) == Some(1.0)
            {
                break 'controller;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the active controller never reported 2 live brokers"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut after = BTreeMap::new();
    for n in names.iter().filter(|n| *n != "broker-3") {
        after.insert(n.clone(), scrape(&c.metrics_url(n).unwrap()).await);
    }

    // Every service counts its RPCs with latencies.
    for (n, s) in &after {
        assert!(
            metric(s, "grpc_server_handled_total", &[]) > 0.0,
            "{n}: no RPCs counted"
        );
        assert!(
            s.samples
                .iter()
                .any(|x| x.metric == "grpc_server_handling_seconds_bucket"
                    || x.metric == "grpc_server_handling_seconds"),
            "{n}: no RPC latency histogram"
        );
    }
    // Brokers: bytes in and out per topic, offsets per partition move.
    let topic = [("topic", "ops")];
    let (b_in, a_in): (f64, f64) = ["broker-1", "broker-2"]
        .iter()
        .map(|b| {
            (
                sum(&before[*b], "sluice_broker_topic_in_bytes_total", &topic).unwrap_or(0.0),
                sum(&after[*b], "sluice_broker_topic_in_bytes_total", &topic).unwrap_or(0.0),
            )
        })
        .fold((0.0, 0.0), |(x, y), (a, b)| (x + a, y + b));
    assert!(a_in > b_in, "bytes in did not move: {b_in} -> {a_in}");
    let leo = |s: &prometheus_parse::Scrape| metric(s, "sluice_partition_log_end_offset", &topic);
    assert!(
        leo(&after["broker-1"]) > leo(&before["broker-1"]),
        "log end offsets did not move"
    );
    assert!(
        metric(
            &after["broker-1"],
            "sluice_partition_high_watermark",
            &topic
        ) > 0.0,
        "no high watermarks"
    );
    let out: f64 = ["broker-1", "broker-2"]
        .iter()
        .filter_map(|b| sum(&after[*b], "sluice_broker_topic_out_bytes_total", &topic))
        .sum();
    assert!(out > 0.0, "no bytes out counted");
    // broker-3 is gone: the survivors lead under-replicated partitions and
    // counted the ISR shrinks.
    let under: f64 = ["broker-1", "broker-2"]
        .iter()
        .map(|b| metric(&after[*b], "sluice_broker_under_replicated_partitions", &[]))
        .sum();
    assert!(under > 0.0, "no under-replicated partitions after a kill");
    let shrinks: f64 = ["broker-1", "broker-2"]
        .iter()
        .filter_map(|b| sum(&after[*b], "sluice_broker_isr_shrinks_total", &[]))
        .sum();
    assert!(shrinks > 0.0, "no ISR shrinks counted after a kill");
    // Controllers: the active one counts its election and sees the cluster.
    let active: Vec<&String> = after
        .iter()
        .filter(|(n, s)| {
            n.starts_with("controller") && sum(s, "sluice_controller_active", &[]) == Some(1.0)
        })
        .map(|(n, _)| n)
        .collect();
    assert_eq!(active.len(), 1, "one active controller");
    let ctl = &after[active[0]];
    assert!(metric(ctl, "sluice_controller_elections_total", &[]) >= 1.0);
    assert!(metric(ctl, "sluice_controller_under_replicated_partitions", &[]) > 0.0);
    assert_eq!(
        metric(ctl, "sluice_controller_offline_partitions", &[]),
        0.0
    );
    assert_eq!(metric(ctl, "sluice_controller_live_brokers", &[]), 2.0);
    // Coordinator: the group's rebalance, members and lag.
    let co = &after["coordinator-1"];
    assert!(metric(co, "sluice_consumer_group_rebalances_total", &group) >= 1.0);
    assert_eq!(metric(co, "sluice_consumer_group_members", &group), 1.0);
    g.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_is_not_serving_until_it_registers() {
    let mut c = TestCluster::start(ClusterSpec {
        brokers: 2,
        controllers: 1,
        // Long enough that the restarted process is up well before its old
        // registration expires.
        lease_ms: 6000,
        // Or the controller could revoke the old lease before the restarted
        // process binds the port, and the window this test looks at closes.
        crash_detection: false,
        ..Default::default()
    })
    .await
    .unwrap();
    wait_serving(&c, "broker-1").await;
    // A broker killed and restarted at once waits out its old lease before
    // it registers: it answers health (NOT_SERVING) meanwhile.
    c.kill("broker-1").unwrap();
    c.restart("broker-1").unwrap();
    let addr = c.grpc_addr("broker-1").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen_not_serving = false;
    while tokio::time::Instant::now() < deadline {
        match health(&addr).await {
            Ok(ServingStatus::NotServing) => {
                seen_not_serving = true;
                break;
            }
            Ok(ServingStatus::Serving) => panic!("SERVING before the old lease expired"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(seen_not_serving, "never saw NOT_SERVING\n{}", c.logs_tail());
    wait_serving(&c, "broker-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_acks_all_loses_nothing_and_surfaces_no_errors() {
    let mut c = TestCluster::start(ClusterSpec {
        min_insync_replicas: 2,
        // Leadership goes back to restarted brokers, as in production.
        leader_imbalance_check_interval_seconds: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let report = sluice_testkit::chaos::rolling_restart(&mut c)
        .await
        .unwrap();
    println!("{}", report.summary());
    eprintln!("{}", report.summary());
    assert!(report.acked > 0, "nothing acknowledged");
    assert_eq!(
        report.unacknowledged,
        0,
        "errors surfaced to the producer\n{}",
        c.logs_tail()
    );
    assert!(report.ok(), "{}\n{}", report.summary(), c.logs_tail());
    // Each broker handed its leadership over before it stopped, rather than
    // leaving the controller to notice an expired lease.
    for b in ["broker-1", "broker-2", "broker-3"] {
        assert!(
            !c.log(b).contains("controlled shutdown timed out"),
            "{b}: controlled shutdown timed out\n{}",
            c.logs_tail()
        );
        assert!(
            c.log(b)
                .contains("controlled shutdown: leadership handed over"),
            "{b} did not complete a controlled shutdown\n{}",
            c.logs_tail()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stops_without_waiting_when_no_controller_can_move_leadership() {
    // `docker compose down` or a whole-cluster stop: the controllers may go
    // first, and then nobody can hand leadership over.
    let mut c = TestCluster::start(ClusterSpec {
        brokers: 2,
        controllers: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin::new(c.client_config()).unwrap();
    admin
        .create_topic(NewTopic::new("led", 2, 2))
        .await
        .unwrap();
    produce(&c, "led", 2, 10).await;
    c.terminate("controller-1").await.unwrap();
    c.terminate("broker-1").await.unwrap();
    let log = c.log("broker-1");
    assert!(
        log.contains("no active controller to move leadership"),
        "broker-1 did not notice the missing controller\n{}",
        c.logs_tail()
    );
    assert!(
        !log.contains("controlled shutdown timed out"),
        "{}",
        c.logs_tail()
    );
}
