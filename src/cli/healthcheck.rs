//! `switchboard healthcheck`: GET `/healthz` and exit 0 on a 2xx, so a container image needs no
//! curl. The URL defaults to the configured `server.listen`, reached over loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Default: http://{server.listen}/healthz of the config (loopback for 0.0.0.0).
    #[arg(long)]
    pub url: Option<String>,
    /// Config file whose server.listen gives the default URL. Without it, the embedded
    /// development config is used.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

pub async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<()> {
    let url = match args.url {
        Some(url) => url,
        None => {
            let config = super::load_or_default(args.config.as_deref())?;
            format!("http://{}/healthz", loopback(config.server.listen))
        }
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms.max(1)))
        .build()
        .context("cannot build the HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("{url} answered HTTP {status}");
    }
    println!("{url}: {status}");
    Ok(())
}

/// The address to reach a server listening on `listen` from the same machine.
pub fn loopback(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => {}
    }
    addr
}
