//! Tests of configuration loading: YAML, properties files, the environment,
//! `--override` flags and Kafka's keys.

use super::*;

#[derive(serde::Deserialize, serde::Serialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
struct Sample {
    #[serde(rename = "num.partitions")]
    num_partitions: i32,
}

#[test]
fn parses_kafka_style_keys() {
    let s: Sample = parse_yaml("num.partitions: 3\n", "test").unwrap();
    assert_eq!(s.num_partitions, 3);
}

#[test]
fn environment_and_overrides_layer_over_the_file() {
    let dir = std::env::temp_dir().join(format!("sluice-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.yaml");
    std::fs::write(&file, "num.partitions: 3\n").unwrap();
    let s: Sample = load_layered(Some(&file), &[]).unwrap();
    assert_eq!(s.num_partitions, 3);
    let s: Sample = load_layered(Some(&file), &["num.partitions=7".into()]).unwrap();
    assert_eq!(s.num_partitions, 7);
    let e = load_layered::<Sample>(Some(&file), &["num.partition=7".into()]).unwrap_err();
    assert!(e.to_string().contains("num.partition"), "{e}");
    let e = load_layered::<Sample>(None, &["num.partitions=many".into()]).unwrap_err();
    assert!(e.to_string().contains("invalid type"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_environment_variables_are_found_with_a_hint() {
    let known = vec!["broker.id".to_string(), "log.dirs".to_string()];
    let found = unknown_env_vars(
        &known,
        [
            "SLUICE_BROKER_ID",
            "SLUICE_BROKR_ID",
            "SLUICE_NOTHING_LIKE_IT",
            "SLUICE_BIN",
            "PATH",
        ],
    );
    assert_eq!(
        found,
        vec![
            ("SLUICE_BROKR_ID".to_string(), Some("broker.id".to_string())),
            ("SLUICE_NOTHING_LIKE_IT".to_string(), None),
        ]
    );
    assert_eq!(env_name("broker.id"), "SLUICE_BROKER_ID");
}

/// A file in a fresh directory, removed on drop.
struct TempFile(std::path::PathBuf);
impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-cfg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

#[derive(serde::Deserialize, serde::Serialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct Svc {
    #[serde(rename = "broker.id")]
    broker_id: i32,
    #[serde(rename = "log.dirs")]
    log_dirs: String,
    #[serde(rename = "log.retention.ms")]
    retention_ms: i64,
    #[serde(rename = "etcd.endpoints")]
    etcd: String,
    #[serde(rename = "cluster.name")]
    cluster_name: String,
    #[serde(rename = "advertised.listeners")]
    advertised: Option<String>,
    #[serde(rename = "auto.create.topics.enable")]
    auto_create: bool,
}

fn props(text: &str) -> Vec<(String, String)> {
    parse_properties(text, "t.properties")
        .unwrap()
        .into_iter()
        .map(|p| (p.key, p.value))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn properties_are_read_as_java_reads_them() {
    let text = "# a comment\n\
                ! another comment\n\
                \n\
                \t  broker.id=1\n\
                listeners : PLAINTEXT://h:9092  \n\
                log.dirs /a,\\\n\
                \x20   /b\n\
                cluster.name\n\
                key\\=with\\:seps=v\\u00e9\\n\r\n\
                trailing=x\\\n";
    assert_eq!(
        props(text),
        pairs(&[
            ("broker.id", "1"),
            ("listeners", "PLAINTEXT://h:9092"),
            ("log.dirs", "/a,/b"),
            ("cluster.name", ""),
            ("key=with:seps", "v\u{e9}"),
            ("trailing", "x"),
        ])
    );
    // A comment line does not continue; a continued line may start with #.
    assert_eq!(
        props("#c\\\na=1\\\n  #2\rb:2"),
        pairs(&[("a", "1#2"), ("b", "2")])
    );
    // An even number of backslashes is an escaped backslash, not a continuation.
    assert_eq!(props("a=c:\\\\\nb=2"), pairs(&[("a", "c:\\"), ("b", "2")]));
    assert_eq!(
        props("emoji=\\uD83D\\uDE00"),
        pairs(&[("emoji", "\u{1F600}")])
    );
    let e = parse_properties("a=1\nb=\\u12", "t.properties").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(e.to_string().contains("t.properties"), "{e}");
}

#[test]
fn the_format_comes_from_the_extension_then_the_content() {
    let p = |name: &str, text: &str| Format::of(Path::new(name), text);
    assert_eq!(p("server.properties", "a: 1\n"), Format::Properties);
    assert_eq!(p("broker.yaml", "a=1\n"), Format::Yaml);
    assert_eq!(p("broker.yml", "a: 1\n"), Format::Yaml);
    assert_eq!(
        p("server.conf", "# x: y\nbroker.id=1\n"),
        Format::Properties
    );
    assert_eq!(
        p("server", "listeners=PLAINTEXT://h:1\n"),
        Format::Properties
    );
    assert_eq!(p("broker.conf", "listeners: a=b\n"), Format::Yaml);
    assert_eq!(p("broker.conf", ""), Format::Yaml);
}

#[test]
fn a_properties_file_layers_like_yaml() {
    let f = TempFile::new(
        "server.properties",
        "broker.id=2\nlog.dirs=/data/a, /data/b\nauto.create.topics.enable=TRUE\n\
         cluster.name=123\nadvertised.listeners=\netcd.endpoints=http://e:2379\n",
    );
    let (c, warnings): (Svc, _) = load_layered_with_warnings(Some(&f.0), &[]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        c,
        Svc {
            broker_id: 2,
            log_dirs: "/data/a, /data/b".into(),
            auto_create: true,
            // Text where the key takes text, even when it reads as a number.
            cluster_name: "123".into(),
            // Empty: unset.
            advertised: None,
            etcd: "http://e:2379".into(),
            ..Svc::default()
        }
    );
    let (c, _): (Svc, _) = load_layered_with_warnings(Some(&f.0), &["broker.id=5".into()]).unwrap();
    assert_eq!(c.broker_id, 5);

    let f = TempFile::new("server.properties", "broker.id=one\n");
    let e = load_layered::<Svc>(Some(&f.0), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`broker.id`") && e.contains("line 1"), "{e}");
}

#[test]
fn kafka_names_and_units_are_translated() {
    let f = TempFile::new(
        "server.properties",
        "node.id=4\nlog.dir=/k\nlog.retention.hours=168\netcd.endpoints=http://e:2379\n",
    );
    let (c, w): (Svc, _) = load_layered_with_warnings(Some(&f.0), &[]).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!((c.broker_id, c.log_dirs.as_str()), (4, "/k"));
    assert_eq!(c.retention_ms, 168 * 3_600_000);
    // The finer unit wins, as in Kafka, and the key itself over both.
    let f = TempFile::new(
        "s.properties",
        "log.retention.hours=1\nlog.retention.minutes=2\n",
    );
    let c: Svc = load_layered(Some(&f.0), &[]).unwrap();
    assert_eq!(c.retention_ms, 120_000);
    let f = TempFile::new("s.yaml", "log.retention.hours: 1\nlog.retention.ms: 5\n");
    let c: Svc = load_layered(Some(&f.0), &[]).unwrap();
    assert_eq!(c.retention_ms, 5);
    let c: Svc = load_layered(None, &["log.retention.hours=-1".into()]).unwrap();
    assert_eq!(c.retention_ms, -1);
    let c: Svc = load_layered(None, &["log.dir=/o".into()]).unwrap();
    assert_eq!(c.log_dirs, "/o");
    // Two names for one key that disagree.
    let f = TempFile::new("s.properties", "log.dirs=/tmp/kafka-logs\nlog.dir=/mine\n");
    let e = load_layered::<Svc>(Some(&f.0), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`log.dirs=/tmp/kafka-logs` (")
            && e.contains("`log.dir=/mine` (")
            && e.contains("Kafka would use `log.dirs` and ignore `log.dir`"),
        "{e}"
    );
    let f = TempFile::new("s.properties", "log.dirs=/same\nlog.dir=/same\n");
    assert_eq!(
        load_layered::<Svc>(Some(&f.0), &[]).unwrap().log_dirs,
        "/same"
    );
}

#[test]
fn zookeeper_is_refused_unless_etcd_is_set() {
    let f = TempFile::new("s.properties", "zookeeper.connect=localhost:2181\n");
    let e = load_layered::<Svc>(Some(&f.0), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("s.properties: line 1: `zookeeper.connect`"),
        "{e}"
    );
    assert!(e.contains("etcd.endpoints=http://HOST:2379"), "{e}");
    let f = TempFile::new(
        "s.properties",
        "zookeeper.connect=localhost:2181\nzookeeper.connection.timeout.ms=6000\n\
         etcd.endpoints=http://e:2379\n",
    );
    let (_, w) = load_layered_with_warnings::<Svc>(Some(&f.0), &[]).unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("`zookeeper.connect` ignored"), "{w:?}");
    assert!(
        w[1].contains("`zookeeper.connection.timeout.ms` ignored: Sluice has no ZooKeeper"),
        "{w:?}"
    );
    let f = TempFile::new("s.properties", "zookeeper.connect=localhost:2181\n");
    load_layered::<Svc>(Some(&f.0), &["etcd.endpoints=http://e:2379".into()]).unwrap();
}

#[test]
fn kafka_keys_sluice_does_not_use_are_named() {
    // In a properties file: warnings, and the rest loads.
    let f = TempFile::new(
        "s.properties",
        "num.network.threads=3\nnum.partitions=1\ndelete.topic.enable=true\nbroker.id=1\n",
    );
    let (c, w) = load_layered_with_warnings::<Svc>(Some(&f.0), &[]).unwrap();
    assert_eq!(c.broker_id, 1);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains(
            "s.properties line 1: `num.network.threads` ignored: Sluice runs on an async runtime"
        ),
        "{w:?}"
    );
    assert!(
        w[1].contains(
            "line 2: `num.partitions` ignored: in Sluice this is a setting of sluice-controller"
        ),
        "{w:?}"
    );
    // In YAML and in flags: errors.
    let f = TempFile::new("s.yaml", "num.partitions: 3\n");
    let e = load_layered::<Svc>(Some(&f.0), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`num.partitions`: in Sluice this is a setting of sluice-controller"),
        "{e}"
    );
    let e = load_layered::<Svc>(None, &["num.io.threads=8".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`num.io.threads`") && e.contains("thread pools"),
        "{e}"
    );
    // Refused everywhere; a value Sluice cannot honour too.
    let f = TempFile::new(
        "s.properties",
        "ssl.keystore.location=/k\ndelete.topic.enable=false\nbrokr.id=1\nport=9092\n",
    );
    let e = load_layered::<Svc>(Some(&f.0), &[])
        .unwrap_err()
        .to_string();
    for want in [
        "line 1: `ssl.keystore.location`: Sluice reads PEM files, not Java keystores",
        "line 2: `delete.topic.enable=false`: Sluice topics can always be deleted (only true is possible)",
        "line 3: unknown key `brokr.id`; did you mean `broker.id`?",
        "line 4: `port`: Kafka's pre-listeners keys are not read",
    ] {
        assert!(e.contains(want), "{want:?} not in {e}");
    }
}

#[test]
fn a_key_set_twice_keeps_the_last_value() {
    let f = TempFile::new("s.properties", "broker.id=0\nlog.dirs=/a\nbroker.id=1\n");
    let (c, w) = load_layered_with_warnings::<Svc>(Some(&f.0), &[]).unwrap();
    assert_eq!(c.broker_id, 1);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("`broker.id` is set on line 1 and again on line 3"),
        "{w:?}"
    );
}

#[test]
fn a_yaml_file_holding_properties_says_so() {
    let f = TempFile::new("broker.yaml", "broker.id=1\nlog.dirs=/a\n");
    let e = load_layered::<Svc>(Some(&f.0), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("name it *.properties"), "{e}");
}

#[test]
fn every_kafka_key_pattern_is_well_formed() {
    for (i, (k, _)) in KAFKA_KEYS.iter().enumerate() {
        assert!(!k.is_empty() && !k[..k.len() - 1].contains('*'), "{k}");
        assert!(
            KAFKA_KEYS[..i].iter().all(|(o, _)| o != k),
            "{k} listed twice"
        );
    }
    assert!(matches!(
        kafka_key("ssl.truststore.location"),
        Some(KafkaKey::Refused(_))
    ));
    assert!(matches!(
        kafka_key("zookeeper.connect"),
        Some(KafkaKey::MetadataQuorum)
    ));
    assert!(matches!(
        kafka_key("zookeeper.session.timeout.ms"),
        Some(KafkaKey::Unused(_))
    ));
    assert!(kafka_key("brokr.id").is_none());
}

#[test]
fn unknown_key_is_named() {
    let e = parse_yaml::<Sample>("num.partition: 3\n", "test.yaml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("num.partition"), "{msg}");
    assert!(msg.contains("test.yaml"), "{msg}");
}
