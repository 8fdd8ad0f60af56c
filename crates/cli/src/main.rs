//! The `stowage` binary: see the `stowage-cli` crate docs.

fn main() -> std::process::ExitCode {
    stowage_cli::run(std::env::args_os())
}
