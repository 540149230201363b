//! Command-line entry: serve, migrate, seed, import, reindex, keygen, token, client, openapi.

use clap::{Parser, Subcommand};

use ketamine_fhir::config::Config;
use ketamine_fhir::import::{self, Imported};
use ketamine_fhir::startup::Application;
use ketamine_fhir::{auth, openapi, seed, startup, store, telemetry};

#[derive(Parser)]
#[command(
    name = "ketamine-fhir",
    version,
    about = "FHIR R4 server for ketamine-infusion pain clinics"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP until SIGINT/SIGTERM.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Load data into the database (idempotent: resources that exist are left as they are).
    #[command(group(clap::ArgGroup::new("dataset").required(true).args(["demo", "synthetic"])))]
    Seed {
        /// The small demo clinic (50 patients with full infusion series, readable ids).
        #[arg(long)]
        demo: bool,
        /// A synthetic clinic at scale through the bulk load path (ids syn-0000001...).
        #[arg(long)]
        synthetic: bool,
        /// Number of synthetic patients (about 10 Observations each).
        #[arg(long, default_value_t = 1000, requires = "synthetic")]
        patients: u64,
    },
    /// Load a practice's data from NDJSON files (one resource per line; ids are kept), all
    /// or nothing: every bad line is reported as FILE:LINE: message and nothing is loaded.
    Import {
        /// NDJSON files, read in the order given.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Rebuild the search index from the stored resources (after a change of search
    /// parameters, CLINIC_TIMEZONE or PUBLIC_BASE_URL).
    Reindex,
    /// Create the ES256 key pair files if they do not exist.
    Keygen,
    /// Print a signed access token, and nothing else, on stdout.
    Token {
        #[arg(long)]
        subject: String,
        /// Space-separated SMART scopes, e.g. "system/*.cruds".
        #[arg(long)]
        scope: String,
        /// Patient id for patient/ scopes.
        #[arg(long)]
        patient: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
    },
    /// Manage SMART Backend Services clients (the token endpoint's callers).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client, or replace the keys and scopes of one registered before.
    Register {
        #[arg(long)]
        client_id: String,
        /// A JSON Web Key Set file (`{"keys": [...]}`) of the client's public keys.
        #[arg(
            long,
            required_unless_present = "jwks_url",
            conflicts_with = "jwks_url"
        )]
        jwks_file: Option<std::path::PathBuf>,
        /// An http(s) URL where the client publishes its JWK Set; fetched and cached.
        #[arg(long)]
        jwks_url: Option<String>,
        /// The space-separated scopes the client may be granted, e.g. "system/*.rs".
        #[arg(long)]
        scope: String,
    },
    /// Print one line per client: id, enabled or disabled, scopes.
    List,
    /// Refuse a client's assertions from now on.
    Disable {
        #[arg(long)]
        client_id: String,
    },
    /// Accept a disabled client's assertions again.
    Enable {
        #[arg(long)]
        client_id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = cli.config;
    config.read_secret_files()?;
    match cli.command {
        Command::Serve => {
            telemetry::init_tracing(config.log_format);
            let applied = store::run_migrations(&config.database_url).await?;
            tracing::info!(count = applied.len(), "migrations applied");
            let application = Application::build(&config)?;
            let reindexed = application.ensure_search_index().await?;
            if reindexed > 0 {
                tracing::info!(
                    resources = reindexed,
                    "search index rebuilt for the current rules"
                );
            }
            tracing::info!(base_url = %application.base_url(), "serving FHIR");
            application.run_until_stopped().await?;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            telemetry::init_tracing(config.log_format);
            let applied = store::run_migrations(&config.database_url).await?;
            tracing::info!(applied = ?applied, "migrations up to date");
        }
        Command::Seed {
            demo,
            synthetic: _,
            patients,
        } => {
            telemetry::init_tracing(config.log_format);
            let pool = startup::command_pool(&config)?;
            let context = config.write_context(config.listen_addr)?;
            store::index::ensure_current(&pool, &context).await?;
            let started = std::time::Instant::now();
            let summary = if demo {
                seed::load_demo(&pool, &context).await?
            } else {
                seed::synthetic::load(&pool, &context, patients).await?
            };
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                created = summary.created,
                existing = summary.existing,
                seconds = format!("{seconds:.1}"),
                resources_per_second = (summary.created as f64 / seconds).round(),
                "seed data loaded"
            );
        }
        Command::Import { files } => {
            telemetry::init_tracing(config.log_format);
            let pool = startup::command_pool(&config)?;
            let context = config.write_context(config.listen_addr)?;
            store::index::ensure_current(&pool, &context).await?;
            let started = std::time::Instant::now();
            match import::import(&pool, &context, &files).await? {
                Imported::Loaded { resources } => {
                    store::bulk::analyze(&pool).await?;
                    tracing::info!(
                        resources,
                        files = files.len(),
                        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                        "import loaded"
                    );
                }
                Imported::Refused(problems) => {
                    for problem in &problems {
                        eprintln!("{problem}");
                    }
                    eprintln!(
                        "nothing was imported: {} problem(s) in the input",
                        problems.len()
                    );
                    std::process::exit(1);
                }
            }
        }
        Command::Reindex => {
            telemetry::init_tracing(config.log_format);
            let pool = startup::command_pool(&config)?;
            let context = config.write_context(config.listen_addr)?;
            let count = store::index::reindex(&pool, &context).await?;
            tracing::info!(resources = count, "search index rebuilt");
        }
        Command::Keygen => {
            let created = auth::keys::generate_if_missing(
                &config.jwt_private_key_file,
                &config.jwt_public_key_file,
            )?;
            let state = if created { "created" } else { "kept existing" };
            eprintln!(
                "{state} key pair: {}",
                config.jwt_private_key_file.display()
            );
        }
        Command::Token {
            subject,
            scope,
            patient,
            ttl,
        } => {
            println!(
                "{}",
                auth::jwt::issue_token(&config, &subject, &scope, patient.as_deref(), ttl)?
            );
        }
        Command::Client { command } => run_client_command(&config, command).await?,
        Command::Openapi => println!("{}", openapi::document_json()),
    }
    Ok(())
}

async fn run_client_command(config: &Config, command: ClientCommand) -> anyhow::Result<()> {
    use store::clients;
    let pool = startup::command_pool(config)?;
    match command {
        ClientCommand::Register {
            client_id,
            jwks_file,
            jwks_url,
            scope,
        } => {
            let keys = match (jwks_file, jwks_url) {
                (Some(file), _) => clients::ClientKeys::Inline(read_jwks(&file)?),
                (None, Some(url)) => clients::ClientKeys::Url(checked_jwks_url(&url)?),
                (None, None) => anyhow::bail!("give --jwks-file or --jwks-url"),
            };
            let created = clients::register(&pool, &client_id, &keys, &scope).await?;
            let state = if created { "registered" } else { "updated" };
            eprintln!("{state} client {client_id}");
        }
        ClientCommand::List => {
            for client in clients::list(&pool).await? {
                let state = if client.enabled {
                    "enabled"
                } else {
                    "disabled"
                };
                println!("{} {state} {}", client.client_id, client.scope);
            }
        }
        ClientCommand::Disable { client_id } => {
            if !clients::set_enabled(&pool, &client_id, false).await? {
                anyhow::bail!("no client {client_id} is registered");
            }
            eprintln!("disabled client {client_id}");
        }
        ClientCommand::Enable { client_id } => {
            if !clients::set_enabled(&pool, &client_id, true).await? {
                anyhow::bail!("no client {client_id} is registered");
            }
            eprintln!("enabled client {client_id}");
        }
    }
    Ok(())
}

/// A JWKS file whose keys all parse as JWKs and carry a `kid`.
fn read_jwks(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let jwks: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let keys = jwks["keys"].as_array().filter(|keys| !keys.is_empty());
    let keys = keys.with_context(|| format!("{} has no \"keys\" array", path.display()))?;
    for key in keys {
        serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.clone())
            .with_context(|| format!("{} holds a key that is not a JWK", path.display()))?;
        anyhow::ensure!(key["kid"].is_string(), "every key of the JWKS needs a kid");
    }
    Ok(jwks)
}

/// An absolute http or https URL without credentials.
fn checked_jwks_url(url: &str) -> anyhow::Result<String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("{url} is not a URL: {e}"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https"),
        "the JWKS URL must be http or https"
    );
    anyhow::ensure!(
        parsed.username().is_empty() && parsed.password().is_none(),
        "the JWKS URL must not hold credentials"
    );
    Ok(url.to_string())
}
