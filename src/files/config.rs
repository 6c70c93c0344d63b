//! The `[uploads]` configuration section: where uploaded files are kept and the limits on them.
//!
//! | key (`[uploads]`) | env | default |
//! |---|---|---|
//! | `max_size` | `UPLOADS_MAX_SIZE` | `20971520` (20 MiB): larger uploads are refused with 413 |
//! | `quota` | `UPLOADS_QUOTA` | `209715200` (200 MiB): bytes of files one user may keep |
//! | `max_files` | `UPLOADS_MAX_FILES` | `500`: files one user may keep |
//! | `orphan_ttl` | `UPLOADS_ORPHAN_TTL` | `24h`: an upload no message names is deleted after this |
//! | `link_ttl` | `UPLOADS_LINK_TTL` | `5m`: lifetime of a signed download link |
//! | `text_tokens` | `UPLOADS_TEXT_TOKENS` | `8000`: tokens of a text file given to the model (about 4 bytes each) |
//! | `s3_bucket` | `UPLOADS_S3_BUCKET` | unset: files go to `<data dir>/uploads` |
//! | `s3_endpoint` | `UPLOADS_S3_ENDPOINT`, else `AWS_ENDPOINT_URL` | unset: AWS S3 |
//! | `s3_region` | `UPLOADS_S3_REGION`, else `AWS_REGION`, else `AWS_DEFAULT_REGION` | `us-east-1` |
//! | `s3_prefix` | `UPLOADS_S3_PREFIX` | `chatbox/uploads`: key prefix in the bucket |
//! | – | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | unset: the instance's role |

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::settings_kit::{
    ConfigError, EnvVars, de, ensure, env_duration, env_parse_into, env_secret, env_string,
    no_placeholder, positive,
};

/// Upload settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Largest file accepted, in bytes.
    pub max_size: u64,
    /// Bytes of stored files one user may keep.
    pub quota: u64,
    /// Files one user may keep.
    pub max_files: usize,
    /// An upload that no message names is deleted after this.
    #[serde(deserialize_with = "de::duration")]
    pub orphan_ttl: Duration,
    /// Lifetime of a signed download link.
    #[serde(deserialize_with = "de::duration")]
    pub link_ttl: Duration,
    /// Tokens of a text file given to the model with its message.
    pub text_tokens: usize,
    /// S3 bucket; unset keeps files in the data directory.
    pub s3_bucket: Option<String>,
    /// S3-compatible endpoint (MinIO, Ceph, ...); unset is AWS.
    pub s3_endpoint: Option<String>,
    /// S3 region.
    pub s3_region: Option<String>,
    /// Key prefix of the files in the bucket.
    pub s3_prefix: String,
    /// `AWS_ACCESS_KEY_ID` (environment only).
    #[serde(skip)]
    pub access_key_id: Option<SecretString>,
    /// `AWS_SECRET_ACCESS_KEY` (environment only).
    #[serde(skip)]
    pub secret_access_key: Option<SecretString>,
    /// `AWS_SESSION_TOKEN` (environment only).
    #[serde(skip)]
    pub session_token: Option<SecretString>,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            max_size: 20 * 1024 * 1024,
            quota: 200 * 1024 * 1024,
            max_files: 500,
            orphan_ttl: Duration::from_secs(24 * 3600),
            link_ttl: Duration::from_secs(300),
            text_tokens: 8000,
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: None,
            s3_prefix: "chatbox/uploads".into(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        }
    }
}

impl UploadsConfig {
    /// Overlays the `UPLOADS_*` and AWS variables.
    pub fn apply_env(&mut self, env: &EnvVars) -> Result<(), ConfigError> {
        env_parse_into(
            env,
            "UPLOADS_MAX_SIZE",
            "must be a number of bytes",
            &mut self.max_size,
        )?;
        env_parse_into(
            env,
            "UPLOADS_QUOTA",
            "must be a number of bytes",
            &mut self.quota,
        )?;
        env_parse_into(
            env,
            "UPLOADS_MAX_FILES",
            "must be a count",
            &mut self.max_files,
        )?;
        env_parse_into(
            env,
            "UPLOADS_TEXT_TOKENS",
            "must be a count",
            &mut self.text_tokens,
        )?;
        env_duration(env, "UPLOADS_ORPHAN_TTL", &mut self.orphan_ttl)?;
        env_duration(env, "UPLOADS_LINK_TTL", &mut self.link_ttl)?;
        env_string(env, "UPLOADS_S3_BUCKET", &mut self.s3_bucket);
        if self.s3_endpoint.is_none() {
            env_string(env, "AWS_ENDPOINT_URL", &mut self.s3_endpoint);
        }
        env_string(env, "UPLOADS_S3_ENDPOINT", &mut self.s3_endpoint);
        if self.s3_region.is_none() {
            env_string(env, "AWS_DEFAULT_REGION", &mut self.s3_region);
            env_string(env, "AWS_REGION", &mut self.s3_region);
        }
        env_string(env, "UPLOADS_S3_REGION", &mut self.s3_region);
        if let Some(prefix) = env.get("UPLOADS_S3_PREFIX") {
            self.s3_prefix = prefix.to_string();
        }
        env_secret(env, "AWS_ACCESS_KEY_ID", &mut self.access_key_id);
        env_secret(env, "AWS_SECRET_ACCESS_KEY", &mut self.secret_access_key);
        env_secret(env, "AWS_SESSION_TOKEN", &mut self.session_token);
        Ok(())
    }

    /// Checks the limits; production refuses a plain-http S3 endpoint (credentials and files would cross
    /// the network in the clear).
    pub fn validate(&self, production: bool) -> Result<(), ConfigError> {
        ensure(self.max_size > 0, "UPLOADS_MAX_SIZE", "must be positive")?;
        ensure(
            self.quota >= self.max_size,
            "UPLOADS_QUOTA",
            "must be at least UPLOADS_MAX_SIZE",
        )?;
        ensure(self.max_files > 0, "UPLOADS_MAX_FILES", "must be positive")?;
        positive("UPLOADS_ORPHAN_TTL", self.orphan_ttl)?;
        positive("UPLOADS_LINK_TTL", self.link_ttl)?;
        if let Some(bucket) = &self.s3_bucket {
            no_placeholder("UPLOADS_S3_BUCKET", bucket)?;
            ensure(!bucket.is_empty(), "UPLOADS_S3_BUCKET", "must not be empty")?;
        }
        if let Some(endpoint) = &self.s3_endpoint {
            ensure(
                endpoint.starts_with("https://") || endpoint.starts_with("http://"),
                "UPLOADS_S3_ENDPOINT",
                "must be an http(s) URL",
            )?;
            ensure(
                !(production && self.s3_bucket.is_some() && endpoint.starts_with("http://")),
                "UPLOADS_S3_ENDPOINT",
                "must use https in production",
            )?;
        }
        ensure(
            self.access_key_id.is_some() == self.secret_access_key.is_some(),
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together",
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_and_checks() {
        let mut config = UploadsConfig::default();
        let env = EnvVars::from_pairs([
            ("UPLOADS_MAX_SIZE", "1024"),
            ("UPLOADS_QUOTA", "4096"),
            ("UPLOADS_S3_BUCKET", "files"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        config.apply_env(&env).unwrap();
        assert_eq!((config.max_size, config.quota), (1024, 4096));
        assert_eq!(config.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.s3_region.as_deref(), Some("eu-west-1"));
        config.validate(false).unwrap();
        let err = config.validate(true).unwrap_err().to_string();
        assert!(err.contains("https"), "{err}");
        config.quota = 10;
        assert!(config.validate(false).is_err());
    }
}
