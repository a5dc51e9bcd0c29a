//! The demo's server: the real [`App`] on a loopback port, which the outage scene stops and
//! starts again on the same port (where Kapso keeps delivering).

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::scene::within;
use crate::app::App;
use crate::config::Config;

pub struct DemoServer {
    config: Config,
    addr: SocketAddr,
    running: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

impl DemoServer {
    /// Serves `config` on `listener`; returns once the startup catch-up has run, so that it
    /// reads Kapso's history before the scene adds to it.
    pub async fn start(config: &Config, listener: TcpListener) -> anyhow::Result<DemoServer> {
        let mut server = DemoServer {
            config: config.clone(),
            addr: listener.local_addr()?,
            running: None,
        };
        server.serve(listener).await?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn serve(&mut self, listener: TcpListener) -> anyhow::Result<()> {
        let app = App::build(self.config.clone()).await?;
        let mut catch_up = app.catch_up_status();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.serve(listener, shutdown.clone()));
        self.running = Some((shutdown, handle));
        within(
            "server's startup catch-up",
            catch_up.wait_for(|status| status.state != "pending"),
        )
        .await?
        .context("the demo server stopped before its startup catch-up")?;
        Ok(())
    }

    /// Graceful shutdown: running jobs finish, the database is closed.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some((shutdown, handle)) = self.running.take() else {
            return Ok(());
        };
        shutdown.cancel();
        within("server to shut down", handle)
            .await?
            .context("the demo server stopped abnormally")?
    }

    /// Serves again on the same port.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("binding the demo server to {} again", self.addr))?;
        self.serve(listener).await
    }
}
