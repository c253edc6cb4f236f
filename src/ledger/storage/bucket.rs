//! A store in an S3-compatible bucket, through the `object_store` crate.
//!
//! Configured as `s3://bucket/prefix`; endpoint, region and credentials
//! come from the standard `AWS_*` environment variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP` for a plain-HTTP endpoint).
//! The bucket must support conditional writes (`If-None-Match: *` and
//! `If-Match` on `PUT`), as AWS S3, MinIO, Cloudflare R2 and moto do.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{ChainLock, ReadAt, Storage};
use crate::ledger::error::LedgerError;

/// Suffix of the folder of an append-only file's parts.
const PARTS: &str = ".parts";

/// A store under a prefix of a bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    client: Arc<AmazonS3>,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    /// The store root inside the bucket (may be empty).
    prefix: String,
    /// How long a writer's lease on a chain lasts without renewal. A
    /// writer renews it at every flush once a third of it has passed; a
    /// crashed writer's chain can be taken over after this long.
    lease: Duration,
}

/// The runtime the bucket's requests run on: the ledger's callers are
/// synchronous (blocking threads, the CLI), so each call is handed to
/// this runtime and waited for.
fn runtime() -> Result<&'static tokio::runtime::Runtime, LedgerError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("custos-bucket")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LedgerError::Internal(format!("cannot start bucket request threads: {e}")))
}

fn block<F>(future: F) -> Result<F::Output, LedgerError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // Unconstrained: called from a task of another runtime (the alert
    // stage opens its chain at start), the join handle would otherwise
    // count against that task's cooperative budget, and once the budget is
    // spent it answers "pending" forever to an executor that never yields.
    futures::executor::block_on(tokio::task::unconstrained(runtime()?.spawn(future)))
        .map_err(|e| LedgerError::Internal(format!("bucket request task: {e}")))
}

impl Bucket {
    /// Connects to `s3://bucket/prefix` and checks that the bucket answers
    /// (an unreachable or missing bucket is an error here, at start).
    pub fn connect(url: &str, lease: Duration) -> Result<Bucket, LedgerError> {
        Bucket::connect_with(url, lease, &[])
    }

    /// [`Bucket::connect`] with client settings (`object_store`'s
    /// `AmazonS3ConfigKey` names, e.g. `aws_endpoint`) on top of the
    /// environment's.
    pub fn connect_with(
        url: &str,
        lease: Duration,
        settings: &[(&str, &str)],
    ) -> Result<Bucket, LedgerError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| LedgerError::InvalidOptions(format!("{url:?} is not an s3:// URL")))?;
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/').to_owned();
        if name.is_empty() || prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(LedgerError::InvalidOptions(format!(
                "{url:?} must be s3://BUCKET or s3://BUCKET/PREFIX"
            )));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(name);
        for (key, value) in settings {
            let key = key
                .parse()
                .map_err(|e| LedgerError::InvalidOptions(format!("bucket setting {key}: {e}")))?;
            builder = builder.with_config(key, *value);
        }
        let client = builder
            .build()
            .map_err(|e| LedgerError::InvalidOptions(format!("bucket {url}: {e}")))?;
        let bucket = Bucket {
            client: Arc::new(client),
            url: format!("s3://{name}/{prefix}")
                .trim_end_matches('/')
                .to_owned(),
            prefix,
            lease,
        };
        // One listing proves the endpoint, the credentials and the bucket.
        let (client, probe) = (bucket.client.clone(), bucket.key(""));
        block(async move { client.list_with_delimiter(Some(&probe)).await })?
            .map_err(|e| bucket.error("", e))?;
        Ok(bucket)
    }

    /// The object store and the root's path in it, for SQL over the bucket.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.client.clone()
    }

    /// The `s3://` URL of a file.
    pub fn url_of(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{rel}", self.url)
        }
    }

    fn key(&self, rel: &str) -> ObjectPath {
        match (self.prefix.is_empty(), rel.is_empty()) {
            (true, _) => ObjectPath::from(rel),
            (false, true) => ObjectPath::from(self.prefix.as_str()),
            (false, false) => ObjectPath::from(format!("{}/{rel}", self.prefix)),
        }
    }

    fn error(&self, rel: &str, e: object_store::Error) -> LedgerError {
        LedgerError::io(self.url_of(rel), std::io::Error::other(e))
    }

    fn get(&self, rel: &str) -> Result<Option<(Bytes, Option<String>)>, LedgerError> {
        let (client, key) = (self.client.clone(), self.key(rel));
        let got = block(async move {
            let got = client.get(&key).await?;
            let e_tag = got.meta.e_tag.clone();
            Ok::<_, object_store::Error>((got.bytes().await?, e_tag))
        })?;
        match got {
            Ok(got) => Ok(Some(got)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    fn put(&self, rel: &str, bytes: Bytes, mode: PutMode) -> Result<Option<String>, LedgerError> {
        let (client, key) = (self.client.clone(), self.key(rel));
        let put = block(async move {
            client
                .put_opts(&key, PutPayload::from(bytes), mode.into())
                .await
        })?;
        match put {
            Ok(result) => Ok(result.e_tag),
            Err(
                e @ (object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }),
            ) => Err(LedgerError::Conflict {
                path: self.describe(rel),
                what: format!("another writer wrote it first ({e})"),
            }),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// The parts of an append-only file, `(first byte offset, size, key)`
    /// in order; an error if they do not tile the file without gaps.
    fn parts(&self, rel: &str) -> Result<Vec<(u64, u64, ObjectPath)>, LedgerError> {
        let (client, dir) = (self.client.clone(), self.key(&format!("{rel}{PARTS}")));
        let listed = block(async move { client.list(Some(&dir)).try_collect::<Vec<_>>().await })?
            .map_err(|e| self.error(rel, e))?;
        let mut parts = Vec::with_capacity(listed.len());
        for meta in listed {
            let name = meta.location.filename().unwrap_or_default();
            let Ok(start) = name.parse::<u64>() else {
                return Err(LedgerError::corrupt(
                    self.describe(rel),
                    format!("part {name:?} is not named by its offset"),
                ));
            };
            parts.push((start, meta.size, meta.location));
        }
        parts.sort_by_key(|p| p.0);
        let mut end = 0;
        for (start, size, _) in &parts {
            if *start != end {
                return Err(LedgerError::corrupt(
                    self.describe(rel),
                    format!("a part starts at byte {start}, the parts before it end at {end}"),
                ));
            }
            end += size;
        }
        Ok(parts)
    }
}

/// An append-only file's parts, as listed when it was opened.
struct PartsReader {
    bucket: Bucket,
    rel: String,
    parts: Vec<(u64, u64, ObjectPath)>,
    /// A single object read whole (not an append-only file).
    whole: Option<Bytes>,
}

impl ReadAt for PartsReader {
    fn len(&self) -> u64 {
        match &self.whole {
            Some(bytes) => bytes.len() as u64,
            None => self.parts.last().map_or(0, |(s, n, _)| s + n),
        }
    }

    fn read_at(&mut self, offset: u64, len: usize) -> Result<Bytes, LedgerError> {
        let end = offset + len as u64;
        if end > self.len() {
            return Err(LedgerError::corrupt(
                self.bucket.describe(&self.rel),
                format!(
                    "read of bytes {offset}..{end} past its end ({})",
                    self.len()
                ),
            ));
        }
        if let Some(bytes) = &self.whole {
            return Ok(bytes.slice(offset as usize..end as usize));
        }
        let mut out = Vec::with_capacity(len);
        for (start, size, key) in &self.parts {
            let (lo, hi) = (offset.max(*start), end.min(start + size));
            if lo >= hi {
                continue;
            }
            let (client, key) = (self.bucket.client.clone(), key.clone());
            let range = (lo - start)..(hi - start);
            let bytes = block(async move { client.get_range(&key, range).await })?
                .map_err(|e| self.bucket.error(&self.rel, e))?;
            out.extend_from_slice(&bytes);
        }
        Ok(Bytes::from(out))
    }
}

/// A writer's lease on a chain: `<manifest>.lease`, replaced with
/// `If-Match` to renew or take over.
#[derive(Serialize, Deserialize)]
struct LeaseBody {
    owner: String,
    /// Milliseconds since the Unix epoch.
    expires_ms: u64,
}

struct Lease {
    bucket: Bucket,
    rel: String,
    chain: String,
    owner: String,
    e_tag: Option<String>,
    renewed: SystemTime,
    lease: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lease_body(owner: &str, lease: Duration) -> Bytes {
    let body = LeaseBody {
        owner: owner.to_owned(),
        expires_ms: now_ms() + lease.as_millis() as u64,
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

impl ChainLock for Lease {
    fn renew(&mut self) -> Result<(), LedgerError> {
        if self.renewed.elapsed().unwrap_or(self.lease) < self.lease / 3 {
            return Ok(());
        }
        let update = PutMode::Update(UpdateVersion {
            e_tag: self.e_tag.clone(),
            version: None,
        });
        match self
            .bucket
            .put(&self.rel, lease_body(&self.owner, self.lease), update)
        {
            Ok(e_tag) => {
                self.e_tag = e_tag;
                self.renewed = SystemTime::now();
                Ok(())
            }
            Err(LedgerError::Conflict { .. }) => Err(LedgerError::Locked {
                chain: self.chain.clone(),
            }),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Released early so a successor need not wait for it to expire.
        let _ = self.bucket.delete(&self.rel);
    }
}

impl Storage for Bucket {
    fn as_bucket(&self) -> Option<&Bucket> {
        Some(self)
    }

    fn describe(&self, rel: &str) -> PathBuf {
        PathBuf::from(self.url_of(rel))
    }

    fn read(&self, rel: &str) -> Result<Option<Bytes>, LedgerError> {
        if let Some((bytes, _)) = self.get(rel)? {
            return Ok(Some(bytes));
        }
        let parts = self.parts(rel)?;
        if parts.is_empty() {
            return Ok(None);
        }
        let mut reader = PartsReader {
            bucket: self.clone(),
            rel: rel.to_owned(),
            parts,
            whole: None,
        };
        let len = reader.len() as usize;
        reader.read_at(0, len).map(Some)
    }

    fn open(&self, rel: &str) -> Result<Option<Box<dyn ReadAt>>, LedgerError> {
        let parts = self.parts(rel)?;
        let whole = if parts.is_empty() {
            match self.get(rel)? {
                Some((bytes, _)) => Some(bytes),
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some(Box::new(PartsReader {
            bucket: self.clone(),
            rel: rel.to_owned(),
            parts,
            whole,
        })))
    }

    fn len(&self, rel: &str) -> Result<Option<u64>, LedgerError> {
        let parts = self.parts(rel)?;
        if let Some((start, size, _)) = parts.last() {
            return Ok(Some(start + size));
        }
        let (client, key) = (self.client.clone(), self.key(rel));
        match block(async move { client.head(&key).await })? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, LedgerError> {
        let (client, key) = (self.client.clone(), self.key(dir));
        let listed = block(async move { client.list_with_delimiter(Some(&key)).await })?
            .map_err(|e| self.error(dir, e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .chain(listed.objects.iter().map(|o| &o.location))
            .filter_map(|p| p.filename().map(str::to_owned))
            .map(|name| match name.strip_suffix(PARTS) {
                // An append-only file shows as the file.
                Some(file) => file.to_owned(),
                None => name,
            })
            .filter(|name| !name.ends_with(".lease"))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn make_dir(&self, _dir: &str) -> Result<(), LedgerError> {
        Ok(())
    }

    fn create(&self, rel: &str, bytes: Bytes, _sync: bool) -> Result<(), LedgerError> {
        if rel.ends_with(".parquet") {
            crate::failpoint::hit("segment.written");
        }
        self.put(rel, bytes, PutMode::Create).map(drop)
    }

    fn replace(&self, rel: &str, bytes: Bytes) -> Result<(), LedgerError> {
        self.put(rel, bytes, PutMode::Overwrite).map(drop)
    }

    fn append(&self, rel: &str, at: u64, bytes: Bytes, _sync: bool) -> Result<(), LedgerError> {
        let len = self.parts(rel)?.last().map_or(0, |(s, n, _)| s + n);
        if len != at {
            return Err(LedgerError::Conflict {
                path: self.describe(rel),
                what: format!("it is {len} bytes long, the writer expected {at}"),
            });
        }
        if rel.starts_with("manifests/") && crate::failpoint::due("manifest.torn") {
            // A `PUT` is not torn: a crash during it leaves nothing.
            crate::failpoint::crash("manifest.torn");
        }
        let part = format!("{rel}{PARTS}/{at:020}");
        self.put(&part, bytes, PutMode::Create).map(drop)
    }

    fn truncate(&self, rel: &str, len: u64) -> Result<(), LedgerError> {
        let parts = self.parts(rel)?;
        if let Some((start, size, _)) = parts.iter().find(|(s, n, _)| *s < len && len < s + n) {
            return Err(LedgerError::corrupt(
                self.describe(rel),
                format!(
                    "cannot cut it at byte {len}: a part spans {start}..{}",
                    start + size
                ),
            ));
        }
        // Last part first: a crash part-way leaves a shorter file, never a
        // gap.
        for (start, _, key) in parts.into_iter().rev().filter(|(s, _, _)| *s >= len) {
            let client = self.client.clone();
            block(async move { client.delete(&key).await })?
                .map_err(|e| self.error(&format!("{rel}{PARTS}/{start:020}"), e))?;
        }
        Ok(())
    }

    fn delete(&self, rel: &str) -> Result<(), LedgerError> {
        let (client, key) = (self.client.clone(), self.key(rel));
        match block(async move { client.delete(&key).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    fn lock(&self, rel: &str, chain: &str) -> Result<Box<dyn ChainLock>, LedgerError> {
        let lease_rel = format!("{rel}.lease");
        let owner = {
            use rand::RngCore;
            let mut id = [0u8; 8];
            rand::rng().fill_bytes(&mut id);
            hex::encode(id)
        };
        let locked = || LedgerError::Locked {
            chain: chain.to_owned(),
        };
        let e_tag = match self.put(&lease_rel, lease_body(&owner, self.lease), PutMode::Create) {
            Ok(e_tag) => e_tag,
            Err(LedgerError::Conflict { .. }) => {
                // Someone holds or held it: take it over only once expired.
                let Some((bytes, e_tag)) = self.get(&lease_rel)? else {
                    return Err(locked());
                };
                let expired = serde_json::from_slice::<LeaseBody>(&bytes)
                    .map_or(true, |held| held.expires_ms < now_ms());
                if !expired {
                    return Err(locked());
                }
                let update = PutMode::Update(UpdateVersion {
                    e_tag,
                    version: None,
                });
                match self.put(&lease_rel, lease_body(&owner, self.lease), update) {
                    Ok(e_tag) => e_tag,
                    Err(LedgerError::Conflict { .. }) => return Err(locked()),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        Ok(Box::new(Lease {
            bucket: self.clone(),
            rel: lease_rel,
            chain: chain.to_owned(),
            owner,
            e_tag,
            renewed: SystemTime::now(),
            lease: self.lease,
        }))
    }
}
