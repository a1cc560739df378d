//! The `bus` command line: what flows on the bus, from the schema.
//!
//! | command | what it does |
//! |---|---|
//! | `bus tail [FILTER]` | live events as JSON lines, decoded with the schema, on an ephemeral consumer |
//! | `bus publish TOPIC JSON` | encodes JSON into the topic's event type and publishes it |
//! | `bus dlq list` / `show SEQ` / `replay` | dead letters: list with their `Bus-Dlq-*` headers, show one decoded, replay to their topic |
//! | `bus status` | streams, consumer groups and dead letters per topic (`--json` for scripts) |
//! | `bus topics` | the events the command line knows, with their topics |
//! | `bus docs` | the AsyncAPI 3.0 document of those events |
//!
//! The connection comes from the same configuration as the library: `BUS_*` environment
//! variables (see `EventBusConfig::from_env`), over a `--config FILE` (TOML or JSON) when given,
//! under `--server URL` when given. `backend` is ignored: the command line talks to NATS.
//!
//! It knows the events it was built with (the `cqc` crate, through the descriptor set that
//! `bus-build` embeds in it) and compiles any others at run time from `--proto DIR` (with
//! `--include DIR` for their imports).
//!
//! Nothing here creates, changes or deletes a stream or a durable consumer: `tail` and `dlq list`
//! read through ephemeral consumers, and the only thing removed is a dead letter that `dlq replay`
//! has republished, once the stream acknowledged the republish.

mod args;
mod catalog;
mod dlq;
mod docs;
mod error;
mod json;
mod nats;
mod publish;
mod status;
mod tail;
mod time;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use crate::args::Cli;
pub use crate::error::Error;

/// Runs the command line on the process's arguments, printing errors to stderr: what the `bus`
/// binary does.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bus: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = runtime.block_on(run(cli, &mut out));
    let _ = out.flush();
    match result {
        Ok(code) => code,
        // `bus tail | head`: the reader went away, which is how a pipe ends.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bus: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command, writing its output to `out`.
///
/// # Errors
///
/// What stopped the command, said so that the user knows what to change.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<ExitCode, Error> {
    use crate::args::{Command, DlqCommand};

    let catalog = catalog::Catalog::load(&cli.global.proto, &cli.global.include)?;
    match cli.command {
        Command::Topics => {
            docs::topics(&catalog, out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Docs(args) => {
            let config = cli.global.config()?;
            docs::docs(&catalog, &config, &args, out)?;
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let config = cli.global.config()?;
            let nats = nats::Nats::connect(config).await?;
            let result = match command {
                Command::Tail(args) => tail::tail(&nats, &catalog, &args, out).await,
                Command::Publish(args) => publish::publish(&nats, &catalog, &args, out).await,
                Command::Status(args) => status::status(&nats, &args, out).await,
                Command::Dlq(DlqCommand::List(args)) => dlq::list(&nats, &args, out).await,
                Command::Dlq(DlqCommand::Show(args)) => {
                    dlq::show(&nats, &catalog, &args, out).await
                }
                Command::Dlq(DlqCommand::Replay(args)) => dlq::replay(&nats, &args, out).await,
                Command::Topics | Command::Docs(_) => unreachable!("handled without a connection"),
            };
            nats.close().await;
            result
        }
    }
}
