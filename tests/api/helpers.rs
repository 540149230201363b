//! `TestApp`: the real server on a free loopback port with its own fresh database,
//! real ES256 keys, and typed helpers for the requests tests make.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ketamine_fhir::auth::{jwt::issue_token, keys};
use ketamine_fhir::config::{Config, Networks};
use ketamine_fhir::startup::Application;
use ketamine_fhir::store;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

pub const FULL_ACCESS: &str = "system/*.cruds";

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub root: String,
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub token: String,
    pub database_url: String,
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL must name a PostgreSQL server for tests; ./scripts/test starts one and sets it",
    )
}

/// `postgres://u:p@h:port/admin_db` with the database name replaced.
fn with_database(url: &str, database: &str) -> String {
    let (prefix, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/{database}")
}

pub async fn create_database() -> String {
    let admin = admin_url();
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = AsyncPgConnection::establish(&admin)
        .await
        .expect("connect to the test server");
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create test database");
    with_database(&admin, &name)
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(customize: impl FnOnce(&mut Config)) -> Self {
        let database_url = create_database().await;
        let key_dir = std::env::temp_dir().join(format!(
            "ketamine-test-keys-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut config = Config::local_defaults();
        config.database_url = database_url;
        config.listen_addr = "127.0.0.1:0".parse().unwrap();
        config.public_base_url = None;
        config.http_workers = 1;
        config.db_pool_size = 8;
        config.jwt_private_key_file = key_dir.join("private.pem");
        config.jwt_public_key_file = key_dir.join("public.pem");
        // Webhook receivers of the tests listen on loopback, as with ./scripts/run.
        config.webhooks.webhook_allow_networks = Networks(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        customize(&mut config);
        Self::start(config).await
    }

    /// Another instance of the service on this one's database, with the same keys and
    /// settings (`customize` may change them), as a load balancer would have several:
    /// tokens are honoured by both, and writes through one are seen by the other.
    pub async fn spawn_instance_sharing(&self, customize: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.config.clone();
        customize(&mut config);
        Self::start(config).await
    }

    async fn start(config: Config) -> Self {
        keys::generate_if_missing(&config.jwt_private_key_file, &config.jwt_public_key_file)
            .unwrap();
        store::run_migrations(&config.database_url)
            .await
            .expect("migrations");
        let application = Application::build(&config).expect("build app");
        application
            .ensure_search_index()
            .await
            .expect("search index");
        let root = format!("http://127.0.0.1:{}", application.port());
        tokio::spawn(application.run_until_stopped());
        let token = issue_token(&config, "test-suite", FULL_ACCESS, None, 600).unwrap();
        TestApp {
            base: format!("{root}/fhir"),
            root,
            client: reqwest::Client::new(),
            database_url: config.database_url.clone(),
            config,
            token,
        }
    }

    pub fn token_for(&self, scope: &str, patient: Option<&str>) -> String {
        issue_token(&self.config, "test-suite", scope, patient, 600).unwrap()
    }

    /// An authorized request to a path under /fhir.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(
                method,
                format!("{}/{}", self.base, path.trim_start_matches('/')),
            )
            .bearer_auth(&self.token)
    }

    /// A GET under /fhir with another token.
    pub async fn get_as(&self, token: &str, path: &str) -> Response {
        self.client
            .get(format!("{}/{}", self.base, path.trim_start_matches('/')))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// A POST of `body` as FHIR JSON under /fhir with another token.
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}/{}", self.base, path.trim_start_matches('/')))
            .bearer_auth(token)
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// A GET under /fhir with no Authorization header.
    pub async fn get_anonymous(&self, path: &str) -> Response {
        self.client
            .get(format!("{}/{}", self.base, path.trim_start_matches('/')))
            .send()
            .await
            .unwrap()
    }

    /// A GET of a server-root path (`readyz`, `metrics`, `openapi.json`), no token.
    pub async fn get_root(&self, path: &str) -> Response {
        self.client
            .get(format!("{}/{}", self.root, path.trim_start_matches('/')))
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Response {
        self.request(method, path)
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::POST, path, body).await
    }

    pub async fn post_with_headers(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self
            .request(Method::POST, path)
            .header("Content-Type", "application/fhir+json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(body.to_string()).send().await.unwrap()
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::PUT, path, body).await
    }

    /// Creates a resource and returns the stored representation (asserting 201).
    pub async fn create(&self, resource: &Value) -> Value {
        let resource_type = resource["resourceType"].as_str().unwrap();
        let response = self.post(resource_type, resource).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "create failed: {body}");
        body
    }

    /// Counts rows of a table in this app's database, for asserting stored state.
    pub async fn count_rows(&self, table: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            count: i64,
        }
        let mut conn = AsyncPgConnection::establish(&self.database_url)
            .await
            .unwrap();
        let row: Count = diesel::sql_query(format!("SELECT count(*) AS count FROM {table}"))
            .get_result(&mut conn)
            .await
            .unwrap();
        row.count
    }
}

pub async fn json(response: Response) -> Value {
    response.json().await.expect("JSON body")
}

/// The ids of a searchset Bundle's matches (not includes or outcomes), in order.
pub fn match_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The URL of a Bundle's link with this relation (`self`, `next`, `previous`), if any.
pub fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_string())
}

/// GETs a link the server gave (a full URL) with the app's token, asserting 200.
pub async fn follow(app: &TestApp, url: &str) -> Value {
    let response = app
        .client
        .get(url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
    json(response).await
}

/// Asserts an OperationOutcome body and returns its issues' diagnostics.
/// The first `expression` of each issue of an OperationOutcome.
pub fn issue_expressions(body: &Value) -> Vec<&str> {
    body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["expression"][0].as_str().unwrap())
        .collect()
}

pub fn outcome_diagnostics(body: &Value) -> Vec<String> {
    assert_eq!(
        body["resourceType"], "OperationOutcome",
        "not an OperationOutcome: {body}"
    );
    body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| {
            issue["diagnostics"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

pub fn patient() -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.7431.1", "value": "KC000001"}],
        "name": [{"family": "Okafor", "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1975-04-12"
    })
}

pub fn heart_rate(patient_id: &str, bpm: i64) -> Value {
    serde_json::json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": "2026-11-20T10:00:00+01:00",
        "valueQuantity": {"value": bpm, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// A MedicationAdministration fixture carrying a documented override of every infusion
/// safety rule, for tests about something else (search, CRUD) whose patients have no
/// weight or vitals on record. The rules themselves are tested in safety.rs. Other
/// resources are returned unchanged.
pub fn with_safety_override(mut resource: Value) -> Value {
    if resource["resourceType"] == "MedicationAdministration" {
        let extensions = resource["extension"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut all = extensions;
        all.push(serde_json::json!({
            "url": "https://ketamine-fhir.example.org/fhir/StructureDefinition/safety-override",
            "extension": [
                {"url": "reason", "valueString": "Test fixture: recorded without weight or vitals"},
                {"url": "practitioner", "valueReference": {"reference": "Practitioner/test-physician"}}
            ]
        }));
        resource["extension"] = Value::Array(all);
    }
    resource
}

/// A completed IV ketamine infusion (with a safety override, see `with_safety_override`).
pub fn infusion(patient_id: &str) -> Value {
    with_safety_override(serde_json::json!({
        "resourceType": "MedicationAdministration",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6130", "display": "ketamine"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectivePeriod": {"start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"},
        "dosage": {
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
            "dose": {"value": 35, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
        }
    }))
}
