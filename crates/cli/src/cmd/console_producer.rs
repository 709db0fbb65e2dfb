//! `sluice console-producer`: kafka-console-producer.sh. One record per
//! stdin line; exits non-zero when any record was not acknowledged.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use sluice_client::{ClientError, Producer, ProducerRecord};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::common::{
    BootstrapOrBrokerList, DeliveryTracker, Role, client_config, hint_unknown_topic, properties,
    property_keys, usage, warn_ignored,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: BootstrapOrBrokerList,
    /// The topic to write to.
    #[arg(long)]
    pub topic: String,
    /// Line reader property `key=value` (repeatable): `parse.key=true`,
    /// `key.separator=:` (default tab), `ignore.error=true`;
    /// `deliver.after.ms=30000` or `deliver.at.ms=<unix ms>` delays every
    /// record (delayed delivery: the `sluice.deliver.*` record headers).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// Producer property `key=value` (repeatable), for example `acks=all`.
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    pub producer_property: Vec<String>,
    /// Producer properties file.
    #[arg(long = "producer.config", value_name = "FILE")]
    pub producer_config: Option<PathBuf>,
}

struct LineReader {
    parse_key: bool,
    key_separator: String,
    ignore_error: bool,
    /// Headers every record carries (a delay request).
    headers: Vec<(String, Option<Bytes>)>,
}

impl LineReader {
    fn from_properties(list: &[String]) -> anyhow::Result<Self> {
        let mut r = LineReader {
            parse_key: false,
            key_separator: "\t".into(),
            ignore_error: false,
            headers: Vec::new(),
        };
        for (k, v) in properties(list)? {
            match k.as_str() {
                "parse.key" => r.parse_key = v == "true",
                "key.separator" => r.key_separator = v,
                "ignore.error" => r.ignore_error = v == "true",
                // The broker checks the value (and refuses a bad one).
                "deliver.after.ms" | "deliver.at.ms" => r
                    .headers
                    .push((format!("sluice.{k}"), Some(Bytes::from(v)))),
                _ => return Err(usage(format!("unknown --property \"{k}\""))),
            }
        }
        Ok(r)
    }

    fn record(&self, topic: &str, line: String) -> anyhow::Result<ProducerRecord> {
        let mut rec = ProducerRecord {
            topic: topic.to_string(),
            headers: self.headers.clone(),
            ..Default::default()
        };
        if self.parse_key {
            match line.split_once(self.key_separator.as_str()) {
                Some((k, v)) => {
                    rec.key = Some(Bytes::from(k.to_string()));
                    rec.value = Some(Bytes::from(v.to_string()));
                }
                None if self.ignore_error => rec.value = Some(Bytes::from(line)),
                None => {
                    return Err(usage(format!(
                        "no key separator {:?} in line {line:?}",
                        self.key_separator
                    )));
                }
            }
        } else {
            rec.value = Some(Bytes::from(line));
        }
        Ok(rec)
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    produce(&a)
        .await
        .map_err(|e| hint_unknown_topic(e, &a.bootstrap.bootstrap_server, &a.topic))
}

async fn produce(a: &Args) -> anyhow::Result<()> {
    let config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.producer_property,
        a.producer_config.as_deref(),
    )?;
    warn_ignored(
        Role::Producer,
        &property_keys(&a.producer_property, a.producer_config.as_deref()),
    );
    let reader = LineReader::from_properties(&a.property)?;
    let producer = Producer::new(config)?;
    let failures: Arc<Mutex<(u64, Option<ClientError>)>> = Arc::default();
    let tracker = {
        let failures = failures.clone();
        DeliveryTracker::spawn(move |_, result| {
            if let Err(e) = result {
                eprintln!("Error when sending message to topic: {e}");
                let mut f = failures.lock().expect("not poisoned");
                f.0 += 1;
                f.1.get_or_insert(e);
            }
        })
    };
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    // On a bad line or a refused send, stop reading but still deliver what
    // was already sent, then report.
    let mut stop_error: Option<anyhow::Error> = None;
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                stop_error = Some(anyhow::Error::new(e).context("read stdin"));
                break;
            }
        };
        let rec = match reader.record(&a.topic, line) {
            Ok(r) => r,
            Err(e) => {
                stop_error = Some(e);
                break;
            }
        };
        match producer.send(rec).await {
            Ok(fut) => tracker.track(Instant::now(), fut),
            Err(e) => {
                stop_error = Some(e.into());
                break;
            }
        }
    }
    producer.close().await;
    tracker.finish().await;
    if let Some(e) = stop_error {
        return Err(e);
    }
    let (n, first) = std::mem::take(&mut *failures.lock().expect("not poisoned"));
    if let Some(e) = first {
        return Err(anyhow::anyhow!("{e} ({n} record(s) were not acknowledged)"));
    }
    Ok(())
}
