//! A real S3 server for the sink tests: `s3s-fs` (installed by
//! `scripts/setup-test-env.sh`) serving a directory on a free 127.0.0.1 port,
//! checking SigV4 signatures. Killed on drop; `stop` and `start` again on the same
//! port and directory make an outage that keeps the objects.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

pub const ACCESS_KEY: &str = "profpipe-test-key";
pub const SECRET_KEY: &str = "profpipe-test-secret";

/// The s3s-fs binary, or a panic saying how to install it.
pub fn s3s_fs() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = Path::new(&home).join(".cache/profpipe-tools/bin/s3s-fs");
    if cached.is_file() {
        return cached;
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    }) {
        return p;
    }
    panic!(
        "s3s-fs not found in ~/.cache/profpipe-tools/bin or on PATH: \
         run scripts/setup-test-env.sh (it installs s3s-fs 0.14.1)"
    );
}

pub struct S3Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl S3Server {
    /// A server on a free port over a new directory holding bucket `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(bucket)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = S3Server {
            port,
            dir,
            child: None,
        };
        s.resume();
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server again (same port, same directory) and waits until it
    /// accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("s3s-fs exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its objects stay in the directory).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A client of `bucket` with the server's credentials.
    pub fn client(&self, bucket: &str) -> Arc<AmazonS3> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_region("us-east-1")
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .unwrap(),
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every object of the bucket: (key, bytes), sorted by key.
pub async fn objects(client: &AmazonS3) -> Vec<(String, Vec<u8>)> {
    let mut keys: Vec<String> = client
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let bytes = client
            .get(&ObjectPath::from(k.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push((k, bytes.to_vec()));
    }
    out
}

/// How many objects the bucket holds.
pub async fn count(client: &AmazonS3) -> usize {
    client.list(None).collect::<Vec<_>>().await.len()
}
