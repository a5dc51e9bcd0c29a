use std::process::ExitCode;

use clap::Parser;
use switchboard::cli::{self, Cli};
use switchboard::telemetry;

/// glibc's allocator spent a tenth of the server's time consolidating free chunks under load;
/// mimalloc does not (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_with_default(cli.log_format, cli.default_log_filter());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli::execute(cli));
    // Everything that matters has finished (the server has committed and closed the database):
    // do not let a lingering blocking task hold the exit past the shutdown grace period.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
