//! A raw Kafka client for tests/serve.rs: one connection, requests of any API and version
//! encoded with kafka-protocol (the request header version that version needs, flexible or
//! not), and responses that must decode at exactly that version, every byte used.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// How long a response may take (no test request long-polls for longer).
const RESPONSE_WAIT_MAX: Duration = Duration::from_secs(30);

/// One connection to a server; correlation ids count up from 1.
pub struct Wire {
    socket: TcpStream,
    correlation_id: i32,
}

impl Wire {
    pub fn connect(addr: &str) -> Wire {
        let socket = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        socket.set_read_timeout(Some(RESPONSE_WAIT_MAX)).unwrap();
        Wire {
            socket,
            correlation_id: 0,
        }
    }

    /// Sends `request` in `version` and returns the response, which must carry the
    /// request's correlation id and decode at `version` with no byte left over.
    pub fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let what = format!("api {} v{version}", R::KEY);
        self.send(version, request);
        let mut size = [0u8; 4];
        self.socket
            .read_exact(&mut size)
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
        self.socket.read_exact(&mut body).unwrap();
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .unwrap_or_else(|e| panic!("{what}: response header: {e}"));
        assert_eq!(
            header.correlation_id, self.correlation_id,
            "{what}: correlation id (an earlier request was answered late, or twice?)"
        );
        let response =
            R::Response::decode(&mut body, version).unwrap_or_else(|e| panic!("{what}: response does not decode: {e}"));
        assert_eq!(
            body.remaining(),
            0,
            "{what}: bytes left after the response decoded at its version"
        );
        response
    }

    /// Sends `request` in `version` and reads nothing (a Produce with acks=0 gets no
    /// response: the next `call` fails if one comes).
    pub fn send<R: Request>(&mut self, version: i16, request: &R) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header.encode(&mut frame, R::header_version(version)).unwrap();
        request
            .encode(&mut frame, version)
            .unwrap_or_else(|e| panic!("encoding api {} v{version}: {e}", R::KEY));
        let size = u32::try_from(frame.len() - 4).unwrap();
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.socket.write_all(&frame).unwrap();
    }

    /// Sends a request of `api_key` in `version` with an empty body, and says whether the
    /// server closed the connection without an answer (as it does for a version it did
    /// not advertise).
    pub fn closed_after(mut self, api_key: i16, version: i16, header_version: i16) -> bool {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id);
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header.encode(&mut frame, header_version).unwrap();
        let size = u32::try_from(frame.len() - 4).unwrap();
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.socket.write_all(&frame).unwrap();
        let mut buf = [0u8; 16];
        match self.socket.read(&mut buf) {
            Ok(0) | Err(_) => true,
            Ok(_) => false,
        }
    }

    /// The versions the server advertises, per API key: ApiVersions v0 (which every
    /// server answers), checked against what every other advertised ApiVersions version
    /// answers.
    pub fn advertised(&mut self) -> BTreeMap<i16, (i16, i16)> {
        let ranges = |response: kafka_protocol::messages::ApiVersionsResponse| -> BTreeMap<i16, (i16, i16)> {
            assert_eq!(response.error_code, 0, "ApiVersions error");
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect()
        };
        let advertised = ranges(self.call(0, &ApiVersionsRequest::default()));
        let &(low, high) = advertised
            .get(&ApiVersionsRequest::KEY)
            .expect("ApiVersions advertises itself");
        for version in low..=high {
            let request = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("wire-test"))
                .with_client_software_version(StrBytes::from_static_str("1"));
            assert_eq!(
                ranges(self.call(version, &request)),
                advertised,
                "ApiVersions v{version} answers another list than v0"
            );
        }
        advertised
    }
}

/// The advertised versions of `api_key`, all of them.
pub fn versions_of(advertised: &BTreeMap<i16, (i16, i16)>, api_key: i16) -> std::ops::RangeInclusive<i16> {
    let &(low, high) = advertised
        .get(&api_key)
        .unwrap_or_else(|| panic!("api {api_key} is not advertised"));
    assert!(low <= high, "api {api_key}: empty range {low}..={high}");
    low..=high
}
