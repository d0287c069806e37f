//! Reading an avatar upload's body: `multipart/form-data` (what `wx.uploadFile` sends)
//! or a raw image body. Which image format it is comes from its bytes, never from the
//! client.

use std::convert::Infallible;

use bytes::Bytes;

use super::body::{MULTIPART_OVERHEAD, RawBody, is_multipart};
use super::error::{ApiError, ErrorCode};
use crate::domain::avatars::ImageType;

fn unsupported() -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedMediaType,
        "the avatar must be a PNG, JPEG, WebP or GIF image, sent as multipart/form-data \
         (wx.uploadFile) or as the raw body with an image/* Content-Type",
    )
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the avatar is larger than the limit of {limit} bytes"),
    )
}

/// The image in an upload body, at most `limit` bytes, and its type.
pub async fn extract(body: RawBody, limit: u64) -> Result<(Bytes, ImageType), ApiError> {
    let content_type = body.content_type.as_deref().unwrap_or_default();
    let file = if is_multipart(content_type) {
        file_part(content_type, body.bytes, limit).await?
    } else {
        let declared = content_type.split(';').next().unwrap_or_default().trim();
        if !declared.to_ascii_lowercase().starts_with("image/") {
            return Err(unsupported());
        }
        body.bytes
    };
    if file.is_empty() {
        return Err(ApiError::invalid("the avatar file is empty"));
    }
    if file.len() as u64 > limit {
        return Err(too_large(limit));
    }
    let kind = ImageType::sniff(&file).ok_or_else(unsupported)?;
    Ok((file, kind))
}

/// The one file of a multipart body: the part with a file name, or the only part.
async fn file_part(content_type: &str, body: Bytes, limit: u64) -> Result<Bytes, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::invalid("the multipart Content-Type has no boundary"))?;
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .per_field(limit)
            .whole_stream(limit.saturating_add(MULTIPART_OVERHEAD)),
    );
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(body) });
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    let malformed = |e: multer::Error| match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            too_large(limit)
        }
        other => ApiError::invalid(format!("the multipart body is malformed: {other}")),
    };
    let mut files = Vec::new();
    let mut others = Vec::new();
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        let named_file = field.file_name().is_some();
        let bytes = field.bytes().await.map_err(malformed)?;
        if named_file {
            files.push(bytes);
        } else {
            others.push(bytes);
        }
    }
    match (files.len(), others.len()) {
        (1, _) => Ok(files.remove(0)),
        (0, 1) => Ok(others.remove(0)),
        _ => Err(ApiError::invalid(
            "send exactly one file in the multipart body",
        )),
    }
}
