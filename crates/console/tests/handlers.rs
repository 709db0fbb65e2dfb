//! The console's handlers against a real standalone node: every page renders
//! what the cluster holds, changes made from forms reach the cluster, bad
//! input gets a readable page with a 4xx status, and read-only mode refuses
//! every change.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use sluice_client::{Admin, ClientConfig, GroupConsumer, NewTopic, Producer, ProducerRecord};
use sluice_console::{AppState, ConsoleOptions, router};
use sluice_standalone::{Standalone, StandaloneOptions};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

struct Fixture {
    node: Standalone,
    _dir: tempfile::TempDir,
    app: axum::Router,
    read_only: axum::Router,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut o = StandaloneOptions::new(dir.path(), addr);
    o.coordinator.group_initial_rebalance_delay_ms = 0;
    o.controller.offsets_topic_num_partitions = 2;
    let node = Standalone::start(o).await.unwrap();
    let opts = ConsoleOptions::new(&node.addr.to_string());
    let app = router(AppState::start(opts.clone(), CancellationToken::new()).unwrap());
    let ro = ConsoleOptions {
        read_only: true,
        ..opts
    };
    let read_only = router(AppState::start(ro, CancellationToken::new()).unwrap());
    Fixture {
        node,
        _dir: dir,
        app,
        read_only,
    }
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, String, Option<String>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = axum::body::to_bytes(resp.into_body(), 8 << 20)
        .await
        .unwrap();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        location,
    )
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let (s, b, _) = call(app, Request::get(uri).body(Body::empty()).unwrap()).await;
    (s, b)
}

async fn post(app: &axum::Router, uri: &str, form: &str) -> (StatusCode, String, Option<String>) {
    let req = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap();
    call(app, req).await
}

fn config(node: &Standalone) -> ClientConfig {
    ClientConfig::new(&node.addr.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_the_cluster_and_forms_change_it() {
    let f = fixture().await;
    let (s, body) = get(&f.app, "/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains(&f.node.addr.port().to_string()), "{body}");
    assert!(body.contains("brokers alive"));

    // Create from the form, then the topic page shows its partitions.
    let (s, _, to) = post(
        &f.app,
        "/topics",
        "name=orders&partitions=3&replication_factor=1&configs=retention.ms%3D86400000",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "create");
    assert!(to.unwrap().starts_with("/topics/orders?msg="));
    let (s, body) = get(&f.app, "/topics/orders").await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("retention.ms") && body.contains("86400000"));
    assert!(body.matches("<tr>").count() >= 3, "{body}");
    let (_, list) = get(&f.app, "/topics?q=ord").await;
    assert!(list.contains("href=\"/topics/orders\""), "{list}");

    // Produce from the page, find it by offset and by time.
    let before = sluice_types::now_ms() - 1000;
    let (s, _, to) = post(
        &f.app,
        "/topics/orders/produce",
        "partition=1&key=k-1&value=%7B%22total%22%3A12%7D&headers=trace%3Dt-9",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let to = to.unwrap();
    assert!(to.contains("partition=1&from=offset&offset=0"), "{to}");
    let (s, found) = get(&f.app, &to).await;
    assert_eq!(s, StatusCode::OK);
    assert!(found.contains("k-1") && found.contains("trace"), "{found}");
    let (_, json) = get(
        &f.app,
        &format!("/topics/orders/messages?from=timestamp&timestamp={before}&format=json"),
    )
    .await;
    assert!(json.contains("&quot;total&quot;: 12"), "{json}");
    // A filter that matches nothing finds nothing, and says how much it read.
    let (_, none) = get(&f.app, "/topics/orders/messages?from=oldest&filter=absent").await;
    assert!(none.contains("0 found, 1 read"), "{none}");

    // Configs, partitions, then delete with the name typed.
    let (s, _, _) = post(
        &f.app,
        "/topics/orders/configs",
        "configs=retention.ms%3D3600000",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _, _) = post(&f.app, "/topics/orders/partitions", "total=4").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let d = Admin::new(config(&f.node))
        .unwrap()
        .describe_topics(&["orders".into()])
        .await
        .unwrap();
    assert_eq!(d[0].partitions.len(), 4);
    assert_eq!(
        d[0].configs.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    let (s, body, _) = post(&f.app, "/topics/orders/delete", "confirm=order").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("type the topic"), "{body}");
    let (s, _, _) = post(&f.app, "/topics/orders/delete", "confirm=orders").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, body) = get(&f.app, "/topics/orders").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_show_lag_and_reset_with_a_preview() {
    let f = fixture().await;
    let admin = Admin::new(config(&f.node)).unwrap();
    admin
        .create_topic(NewTopic::new("events", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&f.node)).unwrap();
    for i in 0..10 {
        producer
            .send(ProducerRecord::new("events", format!("e-{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let mut c = GroupConsumer::new(
        config(&f.node)
            .with("group.id", "readers")
            .unwrap()
            .with("auto.offset.reset", "earliest")
            .unwrap(),
    )
    .unwrap();
    c.subscribe(&["events"]);
    let mut n = 0;
    while n < 10 {
        n += c.poll(Duration::from_millis(100)).await.unwrap().len();
    }
    c.commit_sync().await.unwrap();

    // An active group cannot be reset: the page says why instead of a form.
    let (s, body) = get(&f.app, "/groups/readers").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains("Stable") && body.contains("no active members"),
        "{body}"
    );
    c.close().await.unwrap();

    let (s, preview) = get(
        &f.app,
        "/groups/readers/reset?topic=events&to=earliest&value=",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        preview.contains("Preview") && preview.contains("apply-reset"),
        "{preview}"
    );
    let committed = admin.list_consumer_group_offsets("readers").await.unwrap();
    assert_eq!(
        committed.values().copied().collect::<Vec<_>>(),
        [10],
        "preview changed nothing"
    );
    let (s, _, _) = post(
        &f.app,
        "/groups/readers/reset",
        "topic=events&to=earliest&value=",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let committed = admin.list_consumer_group_offsets("readers").await.unwrap();
    assert_eq!(committed.values().copied().collect::<Vec<_>>(), [0]);
    let (_, list) = get(&f.app, "/groups").await;
    assert!(list.contains("href=\"/groups/readers\""), "{list}");
    let (_, page) = get(&f.app, "/groups/readers").await;
    assert!(page.contains("id=\"total-lag\">10<"), "{page}");
    let (s, _, _) = post(&f.app, "/groups/readers/delete", "confirm=readers").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _) = get(&f.app, "/groups/readers").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_readable_page_and_read_only_refuses_changes() {
    let f = fixture().await;
    Admin::new(config(&f.node))
        .unwrap()
        .create_topic(NewTopic::new("t", 2, 1))
        .await
        .unwrap();
    let bad = [
        ("/topics/t/messages?from=offset&offset=-3", "offset"),
        ("/topics/t/messages?from=oldest&limit=1000000", "limit"),
        (
            "/topics/t/messages?from=timestamp&timestamp=tomorrow-ish",
            "timestamp",
        ),
        ("/topics/t/messages?from=oldest&partition=9", "partition"),
        ("/topics/t/messages/stream?from=offset&offset=x", "offset"),
    ];
    for (uri, field) in bad {
        let (s, body) = get(&f.app, uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            body.contains(field) && body.contains("id=\"error\""),
            "{uri}: {body}"
        );
    }
    let (s, body, _) = post(
        &f.app,
        "/topics",
        "name=bad%20name!&partitions=1&replication_factor=1",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid topic name"), "{body}");
    let (s, body, _) = post(
        &f.app,
        "/topics",
        "name=t&partitions=1&replication_factor=1",
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (s, body, _) = post(
        &f.app,
        "/topics",
        "name=u&partitions=zero&replication_factor=1",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _) = get(&f.app, "/topics/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = get(&f.app, "/no/such/page").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Another site's page posting a form, or a page reaching the console
    // under a foreign name (DNS rebinding): refused.
    let cross = Request::post("/topics")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "127.0.0.1:8080")
        .header("origin", "https://evil.example")
        .body(Body::from("name=x&partitions=1&replication_factor=1"))
        .unwrap();
    let (s, body, _) = call(&f.app, cross).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let same = Request::post("/topics")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "127.0.0.1:8080")
        .header("origin", "http://127.0.0.1:8080")
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(
            "name=from-the-page&partitions=1&replication_factor=1",
        ))
        .unwrap();
    let (s, body, _) = call(&f.app, same).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let rebound = Request::get("/topics")
        .header("host", "evil.example:8080")
        .body(Body::empty())
        .unwrap();
    let (s, body, _) = call(&f.app, rebound).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    // A malformed form is a page too, not axum's plain text.
    let (s, body, _) = post(&f.app, "/groups/g/reset", "to=earliest").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("id=\"error\""), "{body}");

    // Read-only: no forms, and a crafted POST is refused.
    let (_, page) = get(&f.read_only, "/topics/t").await;
    assert!(
        !page.contains("delete-topic") && page.contains("read-only"),
        "{page}"
    );
    let (s, body, _) = post(
        &f.read_only,
        "/topics",
        "name=x&partitions=1&replication_factor=1",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("read-only"));
    let (s, _, _) = post(&f.read_only, "/topics/t/delete", "confirm=t").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let topics = Admin::new(config(&f.node))
        .unwrap()
        .list_topics(false)
        .await
        .unwrap();
    assert!(topics.iter().any(|t| t.name == "t") && !topics.iter().any(|t| t.name == "x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_search_reports_progress_and_rows() {
    let f = fixture().await;
    Admin::new(config(&f.node))
        .unwrap()
        .create_topic(NewTopic::new("s", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&f.node)).unwrap();
    for i in 0..30 {
        producer
            .send(ProducerRecord::new("s", format!("v-{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let (s, body) = get(
        &f.app,
        "/topics/s/messages/stream?from=oldest&filter=v-2&limit=5",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("event: row"), "{body}");
    assert!(body.contains("event: done"), "{body}");
    // v-2, v-20..v-23: the limit.
    assert_eq!(body.matches("event: row").count(), 5, "{body}");
    assert!(body.contains("5 found"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_is_redriven_from_its_page() {
    let f = fixture().await;
    let admin = Admin::new(config(&f.node)).unwrap();
    admin
        .create_topic(NewTopic::new("pay", 1, 1))
        .await
        .unwrap();
    admin
        .create_topic(NewTopic::new("pay.dlq", 1, 1))
        .await
        .unwrap();
    let producer = Producer::new(config(&f.node)).unwrap();
    let mut dead = ProducerRecord::new("pay.dlq", "p-7");
    dead.headers = vec![(
        sluice_client::dead_letter::ORIGINAL_TOPIC.into(),
        Some("pay".into()),
    )];
    producer.send(dead).await.unwrap().await.unwrap();
    let (_, page) = get(&f.app, "/topics/pay.dlq").await;
    assert!(page.contains("id=\"redrive\""), "{page}");
    let (s, _, to) = post(&f.app, "/topics/pay.dlq/redrive", "to=").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(to.unwrap().contains("Redrove%201%20records"));
    let (_, again, to) = post(&f.app, "/topics/pay.dlq/redrive", "to=").await;
    assert!(to.unwrap().contains("Nothing%20to%20redrive"), "{again}");
    let (_, found) = get(&f.app, "/topics/pay/messages?from=oldest").await;
    assert!(
        found.contains("p-7") && found.contains("sluice.redrive.id"),
        "{found}"
    );
}
