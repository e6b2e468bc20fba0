//! `ferrokit`: the command line. `ferrokit serve --dev` runs a LiveKit-
//! compatible server on 127.0.0.1:7880 (HTTP/WebSocket) and UDP 7882;
//! `ferrokit token create` and `ferrokit generate-keys` make credentials;
//! `ferrokit load-test` loads a server with synthetic participants.

mod load_test;
mod tools;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferrokit_server::config::{DEV_API_KEY, DEV_API_SECRET};
use ferrokit_server::{Config, Server};

#[derive(Parser)]
#[command(
    name = "ferrokit",
    version,
    about = "A LiveKit-compatible media server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a new API key and secret.
    GenerateKeys,
    /// Load a server with synthetic publishers and measuring subscribers
    /// (like `lk load-test`).
    LoadTest(load_test::LoadTestArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a signed access token (like `lk token create`).
    Create(tools::TokenArgs),
}

/// Flags with livekit-server's meanings; they override the config file.
#[derive(clap::Args)]
struct ServeArgs {
    /// Development mode: API key `devkey`, secret `secret`, loopback.
    #[arg(long)]
    dev: bool,
    /// livekit.yaml-style config file.
    #[arg(long, env = "LIVEKIT_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// Address to bind HTTP and UDP listeners to.
    #[arg(long)]
    bind: Option<IpAddr>,
    /// HTTP / WebSocket port.
    #[arg(long)]
    port: Option<u16>,
    /// UDP port for all ICE and media traffic.
    #[arg(long)]
    udp_port: Option<u16>,
    /// IP address put in ICE candidates.
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// API keys, "key: secret" (several separated by commas).
    #[arg(long, env = "LIVEKIT_KEYS")]
    keys: Option<String>,
}

/// The config file and flags merged, and the config keys ferrokit ignored.
fn load_config(args: &ServeArgs) -> anyhow::Result<(Config, Vec<String>)> {
    let (mut config, unknown) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_yaml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => (Config::default(), Vec::new()),
    };
    config.load_key_file()?;
    if args.dev {
        config = config.with_dev_keys();
    }
    if let Some(ip) = args.bind {
        config.bind_addresses = vec![ip];
    }
    if let Some(p) = args.port {
        config.port = p;
    }
    if let Some(p) = args.udp_port {
        config.rtc.udp_port = p;
    }
    if let Some(ip) = args.node_ip {
        config.rtc.node_ip = Some(ip);
    }
    if let Some(k) = &args.keys {
        config.add_keys_str(k)?;
    }
    Ok((config, unknown))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (config, unknown) = load_config(&args)?;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        format!(
            "{lvl},ferrokit={lvl},str0m=warn,dimpl=warn",
            lvl = config.logging.level
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    for key in unknown {
        tracing::warn!("config: {key} is not supported by ferrokit and is ignored");
    }
    let dev = args.dev;
    let server = Server::start(config).await?;
    tracing::info!(
        "ferrokit {} listening on http://{} (WebSocket /rtc, /rtc/v1), ICE/UDP {}{}",
        env!("CARGO_PKG_VERSION"),
        server.http_addr(),
        server.udp_addr(),
        if dev {
            format!(", dev keys {DEV_API_KEY}/{DEV_API_SECRET}")
        } else {
            String::new()
        }
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(3)).await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => tokio::runtime::Runtime::new()?.block_on(serve(args)),
        Command::Token(TokenCommand::Create(args)) => {
            println!("{}", tools::create_token(&args)?);
            Ok(())
        }
        Command::GenerateKeys => {
            println!("{}", tools::generate_keys());
            Ok(())
        }
        Command::LoadTest(args) => load_test::run(args),
    }
}
