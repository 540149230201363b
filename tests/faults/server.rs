//! The real `ketamine-fhir serve` process of a fault test: its keys and token (made by the
//! binary's own `keygen` and `token`), its environment, HTTP helpers, and its log.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::cluster::free_port;

pub struct Server {
    pub root: String,
    pub client: reqwest::Client,
    pub token: String,
    database_url: String,
    port: u16,
    dir: PathBuf,
    settings: Vec<(String, String)>,
    child: Option<Child>,
}

/// One answer: its status, its body (JSON when it is), and how long it took.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub elapsed: Duration,
    pub retry_after: Option<String>,
}

impl Answer {
    /// The OperationOutcome's first issue code, or "" for another body.
    pub fn issue_code(&self) -> &str {
        self.body["issue"][0]["code"].as_str().unwrap_or_default()
    }
}

impl Server {
    /// Starts the binary on `database_url` (it migrates an empty database) with extra
    /// settings, and waits until `/readyz` answers 200.
    pub async fn start(database_url: &str, settings: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ketamine-faults-server-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut server = Server {
            root: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            token: String::new(),
            database_url: database_url.to_string(),
            port,
            dir,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        server.command("keygen");
        server.token = server
            .command("token --subject fault-test --scope system/*.cruds --ttl 3600")
            .trim()
            .to_string();
        server.restart().await;
        server
    }

    fn binary(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ketamine-fhir"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .env("JWT_PRIVATE_KEY_FILE", self.dir.join("private.pem"))
            .env("JWT_PUBLIC_KEY_FILE", self.dir.join("public.pem"))
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .env("HTTP_WORKERS", "2")
            .env("WEBHOOK_WORKERS", "0")
            .env("BULK_EXPORT_WORKERS", "0");
        for (name, value) in &self.settings {
            command.env(name, value);
        }
        command
    }

    /// Runs a subcommand of the binary to its end and returns its standard output.
    pub fn command(&self, args: &str) -> String {
        let output = self.binary().args(args.split(' ')).output().unwrap();
        assert!(
            output.status.success(),
            "ketamine-fhir {args}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// (Re)starts `serve` on the same port, database and keys, and waits for readiness.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = self
            .binary()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_until("ready", Duration::from_secs(120), |answer| {
            answer.status == StatusCode::OK
        })
        .await;
    }

    /// Reaps a process killed from outside (`kill -9` of its pid).
    pub fn forget_killed(&mut self) {
        let mut child = self.child.take().expect("the server was started");
        child.wait().unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    /// Whether the process is still running (it has not exited or been killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// Polls `/readyz` every 100 ms until `done` holds for its answer, or panics after `limit`.
    pub async fn wait_until(&self, what: &str, limit: Duration, done: impl Fn(&Answer) -> bool) {
        let started = Instant::now();
        loop {
            if let Ok(answer) = self.try_send(Method::GET, "/readyz", None).await
                && done(&answer)
            {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "server not {what} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A request with the full-access token; a transport error (the server is gone) is `Err`.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, reqwest::Error> {
        self.try_send_with(method, path, body, &[]).await
    }

    pub async fn try_send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, reqwest::Error> {
        let started = Instant::now();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.root))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/fhir+json")
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await?;
        Ok(Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            elapsed: started.elapsed(),
            retry_after,
        })
    }

    /// A request that must get an answer (the server is up).
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        self.try_send(method, path, body).await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("last lines of the server log:");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Patient whose family name and identifier mark the write that made it.
pub fn marked_patient(mark: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:fault-test", "value": mark}],
        "name": [{"family": mark, "given": ["Fault"]}],
        "gender": "female",
        "birthDate": "1975-04-12"
    })
}
