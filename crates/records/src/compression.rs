//! The codecs of a records section, read with a cap on what a batch may
//! inflate to. `kafka-protocol`'s decompressors read to the end, so a few
//! kilobytes of gzip or zstd (a "bomb") could fill the broker's memory; here
//! every codec stops one byte past the cap and the batch is refused.

use std::io::Read;

use bytes::{Buf, Bytes, BytesMut};

use crate::header::Compression;

/// Why a records section did not decompress.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("the records inflate past {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Corrupt(String),
}

/// Largest zstd window accepted (2^25 = 32 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// The xerial framing Kafka's Java client writes around snappy blocks.
const SNAPPY_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// A records section as stored, decompressed, refusing to produce more than
/// `limit` bytes.
pub fn decompress(
    compression: Compression,
    data: Bytes,
    limit: usize,
) -> Result<Bytes, DecompressError> {
    let corrupt = |what: &str, e: std::io::Error| DecompressError::Corrupt(format!("{what}: {e}"));
    match compression {
        Compression::None => Ok(data),
        Compression::Gzip => read_capped(flate2::read::MultiGzDecoder::new(data.reader()), limit)
            .map_err(|e| e.or_corrupt("gzip")),
        Compression::Zstd => {
            let mut d =
                zstd::stream::read::Decoder::new(data.reader()).map_err(|e| corrupt("zstd", e))?;
            // A frame may ask for a window of up to 128 MiB, allocated before
            // any output: 32 MiB covers every level a producer uses.
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| corrupt("zstd", e))?;
            read_capped(d, limit).map_err(|e| e.or_corrupt("zstd"))
        }
        Compression::Lz4 => {
            let d = lz4::Decoder::new(data.reader()).map_err(|e| corrupt("lz4", e))?;
            read_capped(d, limit).map_err(|e| e.or_corrupt("lz4"))
        }
        Compression::Snappy => snappy(&data, limit),
    }
}

/// Reads `r` to its end, or fails one byte past `limit`.
fn read_capped(r: impl Read, limit: usize) -> Result<Bytes, ReadError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(ReadError::Io)?;
    if out.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(out.into())
}

enum ReadError {
    Io(std::io::Error),
    TooLarge(usize),
}

impl ReadError {
    fn or_corrupt(self, codec: &str) -> DecompressError {
        match self {
            ReadError::Io(e) => DecompressError::Corrupt(format!("{codec}: {e}")),
            ReadError::TooLarge(limit) => DecompressError::TooLarge { limit },
        }
    }
}

/// Snappy: raw, or xerial-framed (magic, then length-prefixed raw blocks).
/// Each raw block states its decompressed length up front, so the cap is
/// checked before anything is inflated.
fn snappy(data: &[u8], limit: usize) -> Result<Bytes, DecompressError> {
    let bad = |e: snap::Error| DecompressError::Corrupt(format!("snappy: {e}"));
    let mut blocks: Vec<&[u8]> = Vec::new();
    if let Some(mut rest) = data.strip_prefix(&SNAPPY_MAGIC[..]) {
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(DecompressError::Corrupt(
                    "snappy: truncated block length".into(),
                ));
            }
            let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            rest = &rest[4..];
            if len > rest.len() {
                return Err(DecompressError::Corrupt(
                    "snappy: block runs past the batch".into(),
                ));
            }
            blocks.push(&rest[..len]);
            rest = &rest[len..];
        }
    } else {
        blocks.push(data);
    }
    let mut total = 0usize;
    for b in &blocks {
        total = total.saturating_add(snap::raw::decompress_len(b).map_err(bad)?);
        if total > limit {
            return Err(DecompressError::TooLarge { limit });
        }
    }
    let mut out = BytesMut::zeroed(total);
    let mut at = 0;
    let mut decoder = snap::raw::Decoder::new();
    for b in blocks {
        at += decoder.decompress(b, &mut out[at..]).map_err(bad)?;
    }
    out.truncate(at);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every codec round-trips through kafka-protocol's compressors and
    /// refuses a section that inflates past the cap.
    #[test]
    fn each_codec_is_capped() {
        use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
        let section = vec![b'a'; 1 << 20];
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut out = BytesMut::new();
            let put = |b: &mut BytesMut| {
                b.extend_from_slice(&section);
                Ok(())
            };
            match c {
                Compression::Gzip => Gzip::compress(&mut out, put),
                Compression::Snappy => Snappy::compress(&mut out, put),
                Compression::Lz4 => Lz4::compress(&mut out, put),
                Compression::Zstd => Zstd::compress(&mut out, put),
                Compression::None => unreachable!(),
            }
            .unwrap();
            let data = out.freeze();
            assert!(data.len() < 64 << 10, "{c:?} compresses well");
            let full = decompress(c, data.clone(), 1 << 20).unwrap();
            assert_eq!(full.len(), section.len(), "{c:?}");
            let err = decompress(c, data, (1 << 20) - 1).unwrap_err();
            assert!(
                matches!(err, DecompressError::TooLarge { .. }),
                "{c:?}: {err}"
            );
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let err =
                decompress(c, Bytes::from_static(b"\x82SNAPPY\x00garbage"), 1 << 20).unwrap_err();
            assert!(matches!(err, DecompressError::Corrupt(_)), "{c:?}: {err}");
        }
    }
}
