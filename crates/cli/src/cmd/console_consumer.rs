//! `sluice console-consumer`: kafka-console-consumer.sh. With `--group` (or
//! `group.id` in `--consumer-property` / `--consumer.config`) it joins the
//! consumer group (auto-commit on, commits and leaves on exit); otherwise it
//! reads every partition (or one) without a group.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_client::dead_letter::Route;
use sluice_client::{Consumer, ConsumerRecord, GroupConsumer, TopicPartition};

use super::common::{
    Bootstrap, POLL_SLICE, Role, client_config, consumer_group, properties, property_keys, usage,
    warn_ignored,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// The topic to read.
    #[arg(long)]
    pub topic: String,
    /// Start at the earliest offset instead of the end.
    #[arg(long = "from-beginning")]
    pub from_beginning: bool,
    /// Read only this partition.
    #[arg(long)]
    pub partition: Option<i32>,
    /// With --partition: an offset, `earliest` or `latest` (default latest).
    #[arg(long)]
    pub offset: Option<String>,
    /// Exit after this many records.
    #[arg(long = "max-messages")]
    pub max_messages: Option<u64>,
    /// Exit when no record arrived for this long.
    #[arg(long = "timeout-ms")]
    pub timeout_ms: Option<u64>,
    /// Formatter property `key=value` (repeatable): print.key, print.value,
    /// print.offset, print.partition, print.timestamp, print.headers,
    /// key.separator, line.separator, headers.separator.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// Consumer property `key=value` (repeatable).
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    pub consumer_property: Vec<String>,
    /// Consumer properties file.
    #[arg(long = "consumer.config", value_name = "FILE")]
    pub consumer_config: Option<PathBuf>,
    /// Join this consumer group: partitions are shared with the group's other
    /// members and offsets are committed (auto-commit) so a restart resumes.
    /// `--consumer-property group.id=G` (or group.id in --consumer.config)
    /// does the same.
    #[arg(long)]
    pub group: Option<String>,
    /// With a group: run this shell command for each record (its value on
    /// stdin; SLUICE_TOPIC, SLUICE_PARTITION, SLUICE_OFFSET, SLUICE_KEY and
    /// SLUICE_ATTEMPT in the environment). Exit 0 prints the record; any
    /// other exit fails it (the last stderr line is the reason): it is
    /// retried through `<topic>.retry` up to the consumer property
    /// max.delivery.attempts, then moved to `<topic>.dlq`.
    #[arg(long, value_name = "COMMAND")]
    pub process: Option<String>,
}

/// Kafka's DefaultMessageFormatter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatter {
    pub print_key: bool,
    pub print_value: bool,
    pub print_offset: bool,
    pub print_partition: bool,
    pub print_timestamp: bool,
    pub print_headers: bool,
    pub key_separator: String,
    pub line_separator: String,
    pub headers_separator: String,
}

impl Formatter {
    pub fn from_properties(list: &[String]) -> anyhow::Result<Self> {
        let mut f = Formatter {
            print_key: false,
            print_value: true,
            print_offset: false,
            print_partition: false,
            print_timestamp: false,
            print_headers: false,
            key_separator: "\t".into(),
            line_separator: "\n".into(),
            headers_separator: ",".into(),
        };
        for (k, v) in properties(list)? {
            let flag = v.trim().eq_ignore_ascii_case("true");
            match k.as_str() {
                "print.key" => f.print_key = flag,
                "print.value" => f.print_value = flag,
                "print.offset" => f.print_offset = flag,
                "print.partition" => f.print_partition = flag,
                "print.timestamp" => f.print_timestamp = flag,
                "print.headers" => f.print_headers = flag,
                "key.separator" => f.key_separator = v,
                "line.separator" => f.line_separator = v,
                "headers.separator" => f.headers_separator = v,
                _ => return Err(usage(format!("unknown --property \"{k}\""))),
            }
        }
        Ok(f)
    }

    pub fn write(&self, out: &mut impl Write, r: &ConsumerRecord) -> std::io::Result<()> {
        let sep = self.key_separator.as_bytes();
        if self.print_timestamp {
            write!(out, "CreateTime:{}", r.timestamp)?;
            out.write_all(sep)?;
        }
        if self.print_partition {
            write!(out, "Partition:{}", r.partition)?;
            out.write_all(sep)?;
        }
        if self.print_offset {
            write!(out, "Offset:{}", r.offset)?;
            out.write_all(sep)?;
        }
        if self.print_headers {
            if r.headers.is_empty() {
                out.write_all(b"NO_HEADERS")?;
            }
            for (i, (k, v)) in r.headers.iter().enumerate() {
                if i > 0 {
                    out.write_all(self.headers_separator.as_bytes())?;
                }
                write!(out, "{k}:")?;
                out.write_all(v.as_deref().unwrap_or(b"null"))?;
            }
            out.write_all(sep)?;
        }
        if self.print_key {
            out.write_all(r.key.as_deref().unwrap_or(b"null"))?;
            out.write_all(sep)?;
        }
        if self.print_value {
            out.write_all(r.value.as_deref().unwrap_or(b"null"))?;
        }
        out.write_all(self.line_separator.as_bytes())
    }
}

/// Where records come from: a group member or a plain (assigned) consumer.
enum Source {
    Plain(Consumer),
    Group(Box<GroupConsumer>),
}

impl Source {
    async fn poll(&mut self, timeout: Duration) -> sluice_client::Result<Vec<ConsumerRecord>> {
        match self {
            Source::Plain(c) => c.poll(timeout).await,
            Source::Group(c) => c.poll(timeout).await,
        }
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    // Kafka's console consumer joins the group named by --group or by group.id
    // in --consumer-property / --consumer.config.
    let group = consumer_group(
        a.group.as_deref(),
        &a.consumer_property,
        a.consumer_config.as_deref(),
    )?;
    if group.is_some() && a.partition.is_some() {
        return Err(usage(if a.group.is_some() {
            "--group and --partition cannot be used together"
        } else {
            "--partition cannot be used with group.id (a group member gets its partitions from the group)"
        }));
    }
    if a.process.is_some() && group.is_none() {
        return Err(usage(
            "--process needs --group (failed records are retried and dead-lettered by a group member)",
        ));
    }
    if a.offset.is_some() && a.partition.is_none() {
        return Err(usage("--offset needs --partition"));
    }
    let formatter = Formatter::from_properties(&a.property)?;
    let keys = property_keys(&a.consumer_property, a.consumer_config.as_deref());
    if a.from_beginning
        && let Some((_, reset)) = keys.iter().rev().find(|(k, _)| k == "auto.offset.reset")
        && reset != "earliest"
    {
        return Err(usage(format!(
            "--from-beginning and auto.offset.reset={reset} contradict each other; drop one"
        )));
    }
    let mut config = client_config(
        Some(&a.bootstrap.bootstrap_server),
        &a.consumer_property,
        a.consumer_config.as_deref(),
    )?;
    warn_ignored(
        Role::Consumer {
            group: group.is_some(),
        },
        &keys,
    );
    if a.from_beginning {
        config.set("auto.offset.reset", "earliest")?;
    }
    if let Some(g) = &group {
        config.set("group.id", g)?;
        if a.process.is_some() {
            // Offsets are committed for records the command has handled, not
            // for everything polled (see `run_hooks`).
            config.set("enable.auto.commit", "false")?;
        }
        let mut consumer = GroupConsumer::new(config)?;
        consumer.subscribe(&[a.topic.as_str()]);
        let mut source = Source::Group(Box::new(consumer));
        let timeout = a.timeout_ms.map(Duration::from_millis);
        let mut processed: u64 = 0;
        let result = consume(&mut source, &formatter, &a, timeout, &mut processed).await;
        eprintln!("Processed a total of {processed} messages");
        if let Source::Group(c) = source {
            c.close().await?;
        }
        return result;
    }
    let mut consumer = Consumer::new(config)?;
    match a.partition {
        Some(p) => {
            let tp = TopicPartition::new(a.topic.clone(), p);
            consumer.assign(vec![tp.clone()]);
            match a.offset.as_deref() {
                None if a.from_beginning => consumer.seek_to_beginning(&[tp]).await?,
                None | Some("latest") => consumer.seek_to_end(&[tp]).await?,
                Some("earliest") => consumer.seek_to_beginning(&[tp]).await?,
                Some(o) => {
                    let offset: i64 = o.parse().map_err(|_| {
                        usage(format!(
                            "--offset {o:?} is not a number, earliest or latest"
                        ))
                    })?;
                    consumer.seek(&tp, offset)?;
                }
            }
        }
        None => {
            consumer.assign_all(&a.topic).await?;
        }
    }

    let timeout = a.timeout_ms.map(Duration::from_millis);
    let mut processed: u64 = 0;
    let mut source = Source::Plain(consumer);
    let result = consume(&mut source, &formatter, &a, timeout, &mut processed).await;
    eprintln!("Processed a total of {processed} messages");
    result
}

async fn consume(
    consumer: &mut Source,
    formatter: &Formatter,
    a: &Args,
    timeout: Option<Duration>,
    processed: &mut u64,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut last_record = Instant::now();
    // Ctrl-C or SIGTERM: stop, and (in a group) commit and leave, as Kafka's
    // console consumer does in its shutdown hook.
    let shutdown = sluice_server::runtime::shutdown_token();
    loop {
        if a.max_messages.is_some_and(|m| *processed >= m) {
            return Ok(());
        }
        let mut slice = POLL_SLICE;
        if let Some(t) = timeout {
            let left = t.saturating_sub(last_record.elapsed());
            if left.is_zero() {
                tracing::info!("no record for {t:?}; exiting");
                return Ok(());
            }
            slice = slice.min(left);
        }
        let records = tokio::select! {
            r = consumer.poll(slice) => r?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        if let (Some(cmd), Source::Group(c)) = (&a.process, &mut *consumer) {
            let failed = run_hooks(c, cmd, &records, formatter, a, processed).await?;
            if failed {
                return Ok(());
            }
            continue;
        }
        let mut out = std::io::BufWriter::new(stdout.lock());
        for r in &records {
            if a.max_messages.is_some_and(|m| *processed >= m) {
                break;
            }
            if let Err(e) = formatter.write(&mut out, r) {
                // A closed pipe (`| head`) ends the consumer quietly.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
            *processed += 1;
        }
        if let Err(e) = out.flush() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
}

/// Runs `--process` for each record: a success prints it, a failure
/// `nack`s it. Commits the records handled (and only those), also when it
/// stops early. Returns true when stdout was closed.
async fn run_hooks(
    consumer: &mut GroupConsumer,
    cmd: &str,
    records: &[ConsumerRecord],
    formatter: &Formatter,
    a: &Args,
    processed: &mut u64,
) -> anyhow::Result<bool> {
    let mut handled: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let result = handle_each(
        consumer,
        cmd,
        records,
        formatter,
        a,
        processed,
        &mut handled,
    )
    .await;
    if let Err(e) = consumer.commit_offsets(&handled).await {
        // A rebalance took the partitions: their next owner reads them again.
        tracing::warn!(error = %e, "commit failed");
    }
    result
}

async fn handle_each(
    consumer: &mut GroupConsumer,
    cmd: &str,
    records: &[ConsumerRecord],
    formatter: &Formatter,
    a: &Args,
    processed: &mut u64,
    handled: &mut BTreeMap<TopicPartition, i64>,
) -> anyhow::Result<bool> {
    for r in records {
        if a.max_messages.is_some_and(|m| *processed >= m) {
            break;
        }
        match hook::run(cmd, r).await {
            Ok(()) => {
                let mut out = std::io::stdout().lock();
                if let Err(e) = formatter.write(&mut out, r).and_then(|_| out.flush()) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(true);
                    }
                    return Err(e.into());
                }
            }
            Err(reason) => {
                let n = consumer.nack(r, &reason).await?;
                let next = match &n.route {
                    Route::Retry { after, .. } if after.is_zero() => format!(
                        "retry at once via {}-{}@{}",
                        n.written.topic, n.written.partition, n.written.offset
                    ),
                    // A delayed record's produce answer is its delay id.
                    Route::Retry { after, .. } => format!(
                        "retry in {after:?} via {}-{} (delay id {})",
                        n.written.topic, n.written.partition, n.written.offset
                    ),
                    Route::DeadLetter { .. } => format!(
                        "moved to {}-{}@{}",
                        n.written.topic, n.written.partition, n.written.offset
                    ),
                };
                eprintln!(
                    "{}-{}@{} failed (attempt {}): {reason}; {next}",
                    r.topic, r.partition, r.offset, n.attempt
                );
            }
        }
        handled.insert(TopicPartition::new(&*r.topic, r.partition), r.offset + 1);
        *processed += 1;
    }
    Ok(false)
}

mod hook {
    //! The `--process` command: one shell per record.

    use std::process::Stdio;

    use sluice_client::ConsumerRecord;
    use sluice_client::dead_letter::failed_attempts;
    use tokio::io::AsyncWriteExt;

    /// Runs `cmd` with the record's value on stdin; `Err` carries why it failed.
    pub async fn run(cmd: &str, r: &ConsumerRecord) -> Result<(), String> {
        let key = r
            .key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("SLUICE_TOPIC", &*r.topic)
            .env("SLUICE_PARTITION", r.partition.to_string())
            .env("SLUICE_OFFSET", r.offset.to_string())
            .env("SLUICE_KEY", key)
            .env("SLUICE_ATTEMPT", (failed_attempts(r) + 1).to_string())
            .stdin(Stdio::piped())
            // The command's own output goes to stderr: stdout is for records.
            .stdout(std::io::stderr())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run --process command: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input closes the pipe early.
            let _ = stdin
                .write_all(r.value.as_deref().unwrap_or_default())
                .await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("--process command: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        // The last line is the reason (printed with the failure); the rest
        // is shown as the command wrote it.
        let reason = lines.pop().map(|l| l.trim().to_string());
        for l in lines {
            eprintln!("{l}");
        }
        Err(reason.unwrap_or_else(|| format!("--process command exited with {}", out.status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;

    fn rec() -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("t"),
            partition: 3,
            offset: 42,
            timestamp: 1000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        }
    }

    fn fmt(props: &[&str]) -> String {
        let props: Vec<String> = props.iter().map(|s| s.to_string()).collect();
        let f = Formatter::from_properties(&props).unwrap();
        let mut out = Vec::new();
        f.write(&mut out, &rec()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_like_kafka() {
        assert_eq!(fmt(&[]), "v\n");
        assert_eq!(fmt(&["print.key=true", "key.separator=:"]), "k:v\n");
        assert_eq!(
            fmt(&[
                "print.timestamp=true",
                "print.partition=true",
                "print.offset=true",
                "print.key=true"
            ]),
            "CreateTime:1000\tPartition:3\tOffset:42\tk\tv\n"
        );
        assert!(Formatter::from_properties(&["print.nothing=true".into()]).is_err());
    }
}
