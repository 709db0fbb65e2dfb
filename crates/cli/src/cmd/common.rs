//! Flags and helpers shared by the subcommands: bootstrap servers,
//! `--property k=v` lists, client configs, delivery tracking, progress bars.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_client::{ApiError, ClientConfig, ClientError, DeliveryFuture, RecordMetadata};

/// `--bootstrap-server H:P[,H:P...]`.
#[derive(Debug, Clone, clap::Args)]
pub struct Bootstrap {
    /// The server(s) to connect to: `host:port[,host:port...]`.
    #[arg(long = "bootstrap-server", value_name = "HOST:PORT")]
    pub bootstrap_server: String,
}

/// A usage error with the stable `INVALID_REQUEST` code.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    ClientError::from(ApiError::invalid_request(msg)).into()
}

/// Parses `key=value` strings into a map; a string without `=` names itself
/// in the error.
pub fn properties(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in list {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| usage(format!("property \"{p}\" is not key=value")))?;
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// A client config from, in order of precedence (lowest first): a
/// `.properties` file, `key=value` properties, the `--bootstrap-server` flag.
pub fn client_config(
    bootstrap: Option<&str>,
    props: &[String],
    file: Option<&Path>,
) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::default();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        config.set_properties_text(&text)?;
    }
    config.set_pairs(props)?;
    if let Some(b) = bootstrap {
        config.set("bootstrap.servers", b)?;
    }
    if config.bootstrap_servers.is_empty() {
        return Err(usage(
            "no bootstrap server: pass --bootstrap-server or bootstrap.servers=HOST:PORT",
        ));
    }
    config.validate()?;
    Ok(config)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Kafka's `yyyy-MM-dd HH:mm:ss:SSS`, in UTC.
pub fn format_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}:{millis:03}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// A progress bar on stderr, only when stderr is a terminal.
pub fn progress_bar(len: u64, unit: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(len);
    let template = format!(
        "{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("=> "));
    }
    Some(pb)
}

/// Awaits delivery futures concurrently on a task of its own and calls
/// `on_done(sent_at, result)` as each completes, so the sending loop never
/// waits for acknowledgements.
pub struct DeliveryTracker {
    tx: tokio::sync::mpsc::UnboundedSender<(Instant, DeliveryFuture)>,
    task: tokio::task::JoinHandle<()>,
}

impl DeliveryTracker {
    pub fn spawn<F>(mut on_done: F) -> Self
    where
        F: FnMut(Instant, Result<RecordMetadata, ClientError>) + Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, DeliveryFuture)>();
        let task = tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    msg = rx.recv(), if open => match msg {
                        Some((at, fut)) => pending.push(async move { (at, fut.await) }),
                        None => open = false,
                    },
                    Some((at, result)) = pending.next(), if !pending.is_empty() => {
                        on_done(at, result);
                    }
                    else => break,
                }
            }
        });
        DeliveryTracker { tx, task }
    }

    /// Tracks one delivery sent at `sent_at`.
    pub fn track(&self, sent_at: Instant, fut: DeliveryFuture) {
        // The task only stops after `finish` drops the sender.
        let _ = self.tx.send((sent_at, fut));
    }

    /// Waits until every tracked delivery has completed.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// The longest time `poll` may block in one call, so loops stay responsive.
pub const POLL_SLICE: Duration = Duration::from_millis(1000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_kafka_time() {
        assert_eq!(format_time_ms(0), "1970-01-01 00:00:00:000");
        assert_eq!(format_time_ms(1_700_000_000_123), "2023-11-14 22:13:20:123");
    }

    #[test]
    fn parses_properties() {
        let p = properties(&["a=1".into(), "key.separator==".into()]).unwrap();
        assert_eq!(p["a"], "1");
        assert_eq!(p["key.separator"], "=");
        let e = properties(&["oops".into()]).unwrap_err();
        assert!(e.to_string().starts_with("INVALID_REQUEST: "), "{e}");
    }
}
