//! gRPC over raw HTTP/2: exactly the bytes and headers a test chooses,
//! past every client-side codec, and what the server answered.

use http::{HeaderValue, Method};
use http_body_util::BodyExt as _;
use tonic::transport::Channel;
use tower::ServiceExt as _;

/// What the server answered: the HTTP status and the gRPC status with its
/// message (from the headers of a trailers-only answer, else the trailers).
#[derive(Debug)]
pub struct Answer {
    pub http: http::StatusCode,
    pub grpc: Option<i32>,
    pub message: String,
    /// `grpc-status-details-bin`, decoded (a `google.rpc.Status`).
    pub details: Vec<u8>,
}

impl Answer {
    /// The answer as a tonic Status, to read its details (ErrorInfo…).
    pub fn status(&self) -> tonic::Status {
        tonic::Status::with_details(
            tonic::Code::from(self.grpc.unwrap_or(2)),
            self.message.clone(),
            self.details.clone().into(),
        )
    }
}

/// One HTTP/2 request with exactly these bytes and headers (`te` and the
/// gRPC content type added unless `metadata` sets them), bypassing every
/// client-side codec. Errors are the client's own (e.g. refusing to send).
pub async fn raw_call(
    channel: &Channel,
    method: Method,
    path: &str,
    metadata: &[(&str, HeaderValue)],
    body: Vec<u8>,
) -> Result<Answer, String> {
    let mut request = http::Request::builder().method(method).uri(path);
    if !metadata.iter().any(|(k, _)| *k == "content-type") {
        request = request.header("content-type", "application/grpc");
    }
    request = request.header("te", "trailers");
    for (name, value) in metadata {
        request = request.header(*name, value.clone());
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
        .map_err(|e| e.to_string())?;
    let call = async {
        let response = channel
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let status_in = |headers: &http::HeaderMap| {
            headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(|code| {
                    use base64::Engine as _;
                    let message = headers
                        .get("grpc-message")
                        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                        .unwrap_or_default();
                    let details = headers
                        .get("grpc-status-details-bin")
                        .and_then(|d| {
                            // Sent unpadded; some servers pad.
                            let unpadded = d.as_bytes().trim_ascii_end();
                            let unpadded = unpadded
                                .strip_suffix(b"==")
                                .or(unpadded.strip_suffix(b"="))
                                .unwrap_or(unpadded);
                            base64::engine::general_purpose::STANDARD_NO_PAD
                                .decode(unpadded)
                                .ok()
                        })
                        .unwrap_or_default();
                    (code, message, details)
                })
        };
        let mut found = status_in(&parts.headers);
        if found.is_none() {
            let collected = body.collect().await.map_err(|e| format!("{e:?}"))?;
            found = collected.trailers().and_then(status_in);
            if found.is_none() {
                let text = parts
                    .headers
                    .get("content-type")
                    .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc-web-text"));
                let trailers = grpc_web_trailers(&collected.to_bytes(), text);
                found = status_in(&trailers);
            }
        }
        Ok(Answer {
            http: parts.status,
            grpc: found.as_ref().map(|(code, _, _)| *code),
            message: found
                .as_ref()
                .map(|(_, message, _)| message.clone())
                .unwrap_or_default(),
            details: found.map(|(_, _, details)| details).unwrap_or_default(),
        })
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), call)
        .await
        .map_err(|_| "no answer within 20 s".to_owned())?
}

/// The trailers frame of a gRPC-Web answer body (base64 when `text`: in
/// padded 4-character groups, which concatenated chunks keep).
fn grpc_web_trailers(body: &[u8], text: bool) -> http::HeaderMap {
    use base64::Engine as _;
    let decoded: Vec<u8> = if text {
        body.chunks(4)
            .flat_map(|group| {
                base64::engine::general_purpose::STANDARD
                    .decode(group)
                    .unwrap_or_default()
            })
            .collect()
    } else {
        body.to_vec()
    };
    let mut rest = &decoded[..];
    let mut trailers = http::HeaderMap::new();
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let data = &rest[5..(5 + len).min(rest.len())];
        if rest[0] & 0x80 != 0 {
            for line in String::from_utf8_lossy(data).split("\r\n") {
                if let Some((name, value)) = line.split_once(':')
                    && let (Ok(name), Ok(value)) = (
                        http::HeaderName::from_bytes(name.trim().as_bytes()),
                        HeaderValue::from_str(value.trim()),
                    )
                {
                    trailers.append(name, value);
                }
            }
        }
        rest = &rest[(5 + len).min(rest.len())..];
    }
    trailers
}

/// A gRPC length-prefixed message, uncompressed.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}
