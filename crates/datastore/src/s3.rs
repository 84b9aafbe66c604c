//! S3-compatible object storage backend (`object_store` with the AWS client).

use std::future::Future;
use std::sync::mpsc;
use std::time::SystemTime;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, PutPayload};

use crate::backend::{Backend, ObjectMeta};
use crate::Error;

/// Where and how to reach an S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000` (path-style requests are used).
    pub endpoint: String,
    /// Bucket name (must exist, or set `create_bucket`).
    pub bucket: String,
    /// Key prefix inside the bucket ("" for the whole bucket).
    pub prefix: String,
    /// Region name sent in signatures.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key (never logged).
    pub secret_key: String,
}

/// S3 backend. Calls run on a private Tokio runtime, so the backend can be used from any thread
/// (including rayon workers and threads of another runtime).
pub struct S3Backend {
    store: AmazonS3,
    prefix: String,
    desc: String,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.desc)
            .finish()
    }
}

fn s3err(what: &str, e: object_store::Error) -> Error {
    Error::Backend(format!("{what}: {e}"))
}

impl S3Backend {
    /// Connect to a bucket. No request is made until the first operation.
    pub fn open(cfg: &S3Config) -> Result<Self, Error> {
        let store = AmazonS3Builder::new()
            .with_endpoint(&cfg.endpoint)
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&cfg.access_key)
            .with_secret_access_key(&cfg.secret_key)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .map_err(|e| s3err("configure S3 client", e))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("datastore-s3")
            .build()
            .map_err(|e| Error::io("start S3 runtime".into(), e))?;
        let prefix = cfg.prefix.trim_matches('/').to_string();
        let desc = format!(
            "s3 {} bucket {} prefix {:?}",
            cfg.endpoint, cfg.bucket, prefix
        );
        Ok(Self {
            store,
            prefix,
            desc,
            rt,
        })
    }

    fn key(&self, key: &str) -> OsPath {
        if self.prefix.is_empty() {
            OsPath::from(key)
        } else {
            OsPath::from(format!("{}/{}", self.prefix, key))
        }
    }

    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("S3 task ended without a result")
    }
}

/// S3 reports modification times in whole seconds (`Last-Modified`): round up, so an object touched just
/// after a GC cutoff never looks older than it.
fn meta(m: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        size: m.size,
        modified: SystemTime::from(m.last_modified) + std::time::Duration::from_secs(1),
    }
}

impl Backend for S3Backend {
    fn describe(&self) -> String {
        self.desc.clone()
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), Error> {
        let (s, k) = (self.store.clone(), self.key(key));
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(data));
        self.run(async move { s.put(&k, payload).await })
            .map_err(|e| s3err(&format!("put {key}"), e))?;
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let (s, k) = (self.store.clone(), self.key(key));
        let r = self.run(async move {
            match s.get(&k).await {
                Ok(g) => g.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map(|o| o.map(|b| b.to_vec()))
            .map_err(|e| s3err(&format!("get {key}"), e))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, Error> {
        let (s, k) = (self.store.clone(), self.key(key));
        match self.run(async move { s.head(&k).await }) {
            Ok(m) => Ok(Some(meta(&m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3err(&format!("head {key}"), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, ObjectMeta)>, Error> {
        let s = self.store.clone();
        let p = self.key(prefix.trim_end_matches('/'));
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let items = self.run(async move {
            let mut out = Vec::new();
            let mut st = s.list(Some(&p));
            while let Some(item) = st.next().await {
                out.push(item?);
            }
            Ok::<_, object_store::Error>(out)
        });
        let items = items.map_err(|e| s3err(&format!("list {prefix}"), e))?;
        let mut out: Vec<_> = items
            .iter()
            .map(|m| {
                let k = m.location.as_ref();
                (
                    k.strip_prefix(strip.as_str()).unwrap_or(k).to_string(),
                    meta(m),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        let (s, k) = (self.store.clone(), self.key(key));
        match self.run(async move { s.delete(&k).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3err(&format!("delete {key}"), e)),
        }
    }

    fn touch(&self, key: &str) -> Result<bool, Error> {
        // S3 has no "set mtime": rewrite the object (server-side copy onto itself is refused by S3 without a
        // metadata change, so read and write it back).
        match self.get(key)? {
            None => Ok(false),
            Some(d) => {
                self.put(key, &d)?;
                Ok(true)
            }
        }
    }

    fn remove_if_older(&self, key: &str, cutoff: SystemTime) -> Result<bool, Error> {
        match self.head(key)? {
            Some(m) if m.modified < cutoff => {
                self.delete(key)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
