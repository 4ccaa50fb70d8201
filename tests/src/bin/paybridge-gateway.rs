//! The gateway as a process of its own, for tests that kill it (`paybridge-gateway CONFIG`). It
//! runs the same `app::serve` as the `paybridge` binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: paybridge-gateway CONFIG");
        return ExitCode::FAILURE;
    };
    let served =
        paybridge_server::config::Config::load(std::path::Path::new(&path)).and_then(|config| {
            paybridge_server::logging::init(config.log.format, "warn");
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?
                .block_on(paybridge_server::app::serve(config))
        });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
