//! The `swarmgate` command: a thin shell over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use swarmgate::config::{Config, LogFormat};

// mimalloc: fewer cycles per allocation than glibc malloc under many small, short-lived
// allocations across threads (hyper header maps, buffers), and it returns memory well.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "swarmgate", version, about = "HTTP(S) ingress for Docker Swarm")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (without --config: the embedded default, config/swarmgate.toml).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the route table it compiles to. Exit 1 when a problem
    /// drops or changes a route (an error); warnings (labels that change nothing served) print
    /// but exit 0 unless --strict. With --services (JSON from `docker service inspect …`) and
    /// optionally --tasks (JSON from the engine's `/tasks`), or with --docker (the live
    /// engine), also show the routes and problems the Swarm labels produce, without changing
    /// anything. --format json prints one JSON document for scripts.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long, conflicts_with = "docker")]
        services: Option<PathBuf>,
        #[arg(long, requires = "services")]
        tasks: Option<PathBuf>,
        #[arg(long)]
        docker: bool,
        /// Exit 1 on warnings too.
        #[arg(long)]
        strict: bool,
        #[arg(long, value_enum, default_value_t = swarmgate::check::Format::Text)]
        format: swarmgate::check::Format,
    },
    /// Ask a running instance whether it is ready (the image has no curl): GET `--url`, by
    /// default `/readyz` on the config's admin listener; exit 0 on a 2xx answer, 1 otherwise,
    /// printing a one-line reason either way.
    Healthcheck {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// e.g. `http://127.0.0.1:2019/readyz` (only http://).
        #[arg(long)]
        url: Option<String>,
        /// Longest wait for the connection and for the answer.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Print the version.
    Version,
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
        LogFormat::Clf | LogFormat::Combined => {
            // Access lines are the bare CLF line (the message) that log analysers read; every
            // other line keeps the text format.
            let is_access = |m: &tracing::Metadata<'_>| m.target() == "swarmgate::access";
            let access = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .without_time()
                .with_level(false)
                .with_target(false)
                .with_filter(tracing_subscriber::filter::filter_fn(is_access));
            let rest = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::filter_fn(move |m| !is_access(m)));
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
            tracing_subscriber::registry().with(filter).with(access).with(rest).init();
        }
    }
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::embedded(),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("swarmgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Healthcheck { config, url, timeout } => healthcheck(config.as_ref(), url, timeout),
        Command::Check { config, services, tasks, docker, strict, format } => {
            match check(config.as_ref(), services.as_ref(), tasks.as_ref(), docker, strict, format) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Run { config } => {
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::from(1);
                }
            };
            init_logging(&cfg);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            match runtime.block_on(run(cfg, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    swarmgate::duration::parse(s).map_err(|e| e.to_string())
}

/// `swarmgate healthcheck`: the reason goes to stdout when ready, to stderr when not (Docker
/// keeps both in `docker inspect`'s health log).
fn healthcheck(config: Option<&PathBuf>, url: Option<String>, timeout: std::time::Duration) -> ExitCode {
    let url = match url {
        Some(u) => u,
        None => match load(config).map(|c| c.listen.admin) {
            Ok(Some(admin)) => swarmgate::healthcheck::default_url(admin),
            Ok(None) => {
                eprintln!("unhealthy: listen.admin is not set in the config; set it or give --url");
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("unhealthy: {e:#}");
                return ExitCode::from(1);
            }
        },
    };
    match swarmgate::healthcheck::probe(&url, timeout) {
        Ok(reason) => {
            println!("healthy: {reason}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("unhealthy: {reason}");
            ExitCode::from(1)
        }
    }
}

async fn run(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let running = swarmgate::app::start(cfg, path).await.context("starting swarmgate")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight requests"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing in-flight requests"),
    }
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Prints the compiled table and every problem; returns false when there are errors.
fn check(
    path: Option<&PathBuf>,
    services: Option<&PathBuf>,
    tasks: Option<&PathBuf>,
    docker: bool,
    strict: bool,
    format: swarmgate::check::Format,
) -> anyhow::Result<bool> {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(false);
        }
    };
    if let Err(e) = swarmgate::app::load_static_certs(&cfg) {
        eprintln!("error: {e}");
        return Ok(false);
    }
    if let Err(e) = swarmgate::admin::auth::AdminAuth::load(&cfg.admin) {
        eprintln!("error: {e}");
        return Ok(false);
    }
    use swarmgate::discovery::swarm::{reconcile, snapshot_from_json, NetworkSelection, SwarmProvider};
    let selection = NetworkSelection::from_config(&cfg.docker.networks);
    let swarm = if let Some(services) = services {
        let services_json =
            std::fs::read_to_string(services).with_context(|| format!("reading {}", services.display()))?;
        let tasks_json = match tasks {
            Some(t) => Some(std::fs::read_to_string(t).with_context(|| format!("reading {}", t.display()))?),
            None => None,
        };
        Some(snapshot_from_json(&services_json, tasks_json.as_deref(), &selection, &cfg.labels)?)
    } else if docker {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Some(runtime.block_on(async {
            let provider = SwarmProvider::connect(&cfg.docker).await?;
            let client = provider.client();
            let (services, tasks, networks) =
                (client.services().await?, client.tasks().await?, client.networks().await?);
            anyhow::Ok(reconcile(&services, &tasks, &networks, &selection, &cfg.labels))
        })?)
    } else {
        None
    };
    // DNS names among the file and label upstreams, looked up as `run` would.
    let file = cfg.route_specs();
    let (swarm_routes, mut problems) = swarm.map(|s| (s.routes, s.problems)).unwrap_or_default();
    let mut names = swarmgate::discovery::dns::names_in(&file);
    names.extend(swarmgate::discovery::dns::names_in(&swarm_routes));
    let dns = if names.is_empty() {
        swarmgate::discovery::dns::DnsCache::default()
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(swarmgate::discovery::dns::DnsCache::default().refreshed(&names, cfg.dns.timeout.0))
    };
    let (mut specs, file_problems) = dns.apply(&file);
    let (labelled, label_problems) = dns.apply(&swarm_routes);
    specs.extend(labelled);
    problems.extend(file_problems.into_iter().chain(label_problems));
    let table = swarmgate::check::compile_for_check(&specs, problems);
    match format {
        swarmgate::check::Format::Text => print!("{}", swarmgate::check::render_table(&table)),
        swarmgate::check::Format::Json => println!("{}", swarmgate::check::render_json(&table)),
    }
    Ok(!table.problems.iter().any(|p| strict || p.is_error()))
}
