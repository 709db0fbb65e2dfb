//! Kafka frames: a 4-byte big-endian size, then a request header and body.
//! Parsing is a pure function over the frame's bytes ([`parse_request`]), so
//! it is property-tested over arbitrary input without sockets.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::versions;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Why a frame could not become a [`Request`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    /// Shorter than api key + version + correlation id.
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// An API key Kafka does not define: the connection is closed, as Kafka does.
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    /// A known API at a version this broker does not serve. ApiVersions is
    /// answered (with the version table); other APIs close the connection.
    #[error("{api_key:?} v{version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        min: i16,
        max: i16,
        correlation_id: i32,
    },
    /// The header or body does not decode at the version it claims.
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Decodes one frame (the bytes after the size prefix).
pub fn parse_request(frame: Bytes) -> Result<Request, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let mut peek = &frame[..8];
    let raw_key = peek.get_i16();
    let version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let api_key = ApiKey::try_from(raw_key).map_err(|_| FrameError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let Some((min, max)) = versions::supported(api_key) else {
        return Err(FrameError::UnknownApiKey {
            api_key: raw_key,
            correlation_id,
        });
    };
    if version < min || version > max {
        return Err(FrameError::UnsupportedVersion {
            api_key,
            version,
            min,
            max,
            correlation_id,
        });
    }
    let malformed = |e: anyhow::Error| FrameError::Malformed {
        api_key,
        version,
        correlation_id,
        reason: format!("{e:#}"),
    };
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version))
        .map_err(malformed)?;
    let body = RequestKind::decode(api_key, &mut buf, version).map_err(malformed)?;
    Ok(Request {
        api_key,
        version,
        header,
        body,
    })
}

/// Encodes a response frame: size, header (the version the API's schema asks
/// for: ApiVersions always uses header v0), body.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::with_capacity(4 + 64);
    buf.extend_from_slice(&[0; 4]);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    fn frame(key: ApiKey, version: i16, body: impl Encodable) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_a_flexible_and_a_classic_request() {
        let r =
            parse_request(frame(ApiKey::ApiVersions, 3, ApiVersionsRequest::default())).unwrap();
        assert_eq!(
            (r.api_key, r.version, r.header.correlation_id),
            (ApiKey::ApiVersions, 3, 7)
        );
        assert_eq!(r.header.client_id.as_deref(), Some("t"));
        let r = parse_request(frame(ApiKey::Metadata, 1, MetadataRequest::default())).unwrap();
        assert!(matches!(r.body, RequestKind::Metadata(_)));
    }

    #[test]
    fn refuses_unknown_keys_unsupported_versions_and_truncation() {
        let mut raw = BytesMut::from(&frame(ApiKey::Metadata, 1, MetadataRequest::default())[..]);
        raw[..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            parse_request(raw.freeze()),
            Err(FrameError::UnknownApiKey {
                api_key: 999,
                correlation_id: 7
            })
        ));
        let f = frame(ApiKey::ApiVersions, 3, ApiVersionsRequest::default());
        let mut raw = BytesMut::from(&f[..]);
        raw[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            parse_request(raw.freeze()),
            Err(FrameError::UnsupportedVersion { version: 99, .. })
        ));
        let f = frame(ApiKey::Metadata, 9, MetadataRequest::default());
        assert!(matches!(
            parse_request(f.slice(..f.len() - 1)),
            Err(FrameError::Malformed { .. })
        ));
        assert!(matches!(
            parse_request(Bytes::from_static(&[0, 3])),
            Err(FrameError::TooShort(2))
        ));
    }

    proptest! {
        // The frame decoder never panics, whatever the bytes.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request(Bytes::from(data));
        }

        // Valid headers with arbitrary bodies, for every served API and version.
        #[test]
        fn arbitrary_bodies_never_panic(
            which in 0usize..64,
            version_pick in any::<u16>(),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let table = versions::TABLE;
            let (key, min, max) = table[which % table.len()];
            let version = min + (version_pick % (max - min + 1) as u16) as i16;
            let mut raw = BytesMut::new();
            raw.extend_from_slice(&(key as i16).to_be_bytes());
            raw.extend_from_slice(&version.to_be_bytes());
            raw.extend_from_slice(&1i32.to_be_bytes());
            raw.extend_from_slice(&body);
            let _ = parse_request(raw.freeze());
        }
    }
}
