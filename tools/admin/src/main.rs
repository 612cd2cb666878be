//! `switchyard-admin` (see the library for the commands): call the management API from a shell, signed with a service's key

use clap::Parser;
use std::process::ExitCode;
use switchyard_admin::{execute, Args};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match execute(&args).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard-admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}
