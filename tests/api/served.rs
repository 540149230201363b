//! A loopback HTTP server inside a test that serves JSON documents by path (a client's
//! JWK Set, an identity provider's discovery document and keys) and counts the requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

#[derive(Default)]
struct Documents {
    by_path: Mutex<HashMap<String, Value>>,
    fetches: Mutex<HashMap<String, usize>>,
}

pub struct Served {
    pub root: String,
    documents: Arc<Documents>,
}

async fn serve(request: HttpRequest, documents: web::Data<Documents>) -> HttpResponse {
    let path = request.path().to_string();
    *documents
        .fetches
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default() += 1;
    match documents.by_path.lock().unwrap().get(&path) {
        Some(document) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "max-age=600"))
            .json(document),
        None => HttpResponse::NotFound().finish(),
    }
}

impl Served {
    pub fn start() -> Self {
        let documents = Arc::new(Documents::default());
        let data = web::Data::from(documents.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(serve))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Served {
            root: format!("http://127.0.0.1:{port}"),
            documents,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    pub fn set(&self, path: &str, document: Value) {
        let mut by_path = self.documents.by_path.lock().unwrap();
        by_path.insert(path.to_string(), document);
    }

    pub fn fetches(&self, path: &str) -> usize {
        let fetches = self.documents.fetches.lock().unwrap();
        fetches.get(path).copied().unwrap_or(0)
    }
}

/// A URL on loopback where nothing listens.
pub fn unreachable_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/jwks.json")
}
