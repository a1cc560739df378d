//! The `bus` command line; see the `bus_cli` library for what each subcommand does.

fn main() -> std::process::ExitCode {
    bus_cli::main()
}
