//! The `impasto` command: parses the command line, runs it, and turns the outcome into an exit status
//! (0 done, 1 error, 2 bad command line, 130 interrupted) with any error on one line of stderr.
//! `impasto bench`, `impasto devices`, `impasto models`, `impasto serve`, `impasto batch` and
//! `impasto video` and `impasto tiles` are the subcommands; without one, the
//! arguments are a style-transfer run.

mod args;
mod batch;
mod bench;
mod devices;
mod import;
mod inputs;
mod interrupt;
mod models;
mod params;
mod progress;
mod run;
mod serve;
mod settings;
mod shard;
mod tiles;
mod video;
mod weights;

use std::process::ExitCode;

use crate::args::{Cli, Command};
use crate::run::Outcome;

fn main() -> ExitCode {
    let cli = match Cli::parse_args() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors to stderr with status 2, on
            // one line as every other error.
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                }
                _ => progress::note(&usage_error_line(&e.render().to_string())),
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let outcome = match cli.command {
        Some(Command::Bench(args)) => bench::run(&args).map(|()| Outcome::Done),
        Some(Command::Devices(args)) => devices::run(&args).map(|()| Outcome::Done),
        Some(Command::Models(args)) => {
            models::run(args, &settings::Env::from_process()).map(|()| Outcome::Done)
        }
        Some(Command::Serve(args)) => {
            serve::run(args, &settings::Env::from_process()).map(|()| Outcome::Done)
        }
        Some(Command::Batch(args)) => {
            batch::run(args, &settings::Env::from_process(), &shard::ShardEnv::from_process())
        }
        Some(Command::Video(args)) => video::run(*args, &settings::Env::from_process()),
        Some(Command::Tiles(args)) => {
            tiles::run(*args, &settings::Env::from_process(), &shard::ShardEnv::from_process())
        }
        None => run::run(cli.run, &settings::Env::from_process()),
    };
    match outcome {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(interrupt::EXIT_INTERRUPTED),
        Err(e) => {
            progress::note(&error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `impasto: error: outer: inner: cause`, always one line, with the command line's advice where a
/// flag or command fixes it.
fn error_line(e: &anyhow::Error) -> String {
    let chain = format!("{e:#}{}", weights::cli_hint(e).unwrap_or_default());
    let one_line: Vec<&str> = chain.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    format!("impasto: error: {}", one_line.join(" "))
}

/// clap's usage error on one line: `impasto: error: MESSAGE DETAILS; tip: … (try --help)`, without
/// the usage line (the message names the flag or argument at fault).
fn usage_error_line(rendered: &str) -> String {
    let mut message = Vec::new();
    let mut tips = Vec::new();
    let mut in_usage = false;
    for line in rendered.lines().map(str::trim) {
        // The usage block runs from `Usage:` to the next empty line.
        in_usage = (in_usage || line.starts_with("Usage:")) && !line.is_empty();
        if in_usage || line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        match line.strip_prefix("tip:") {
            Some(tip) => tips.push(format!("; tip:{tip}")),
            None => message.push(line.strip_prefix("error: ").unwrap_or(line)),
        }
    }
    format!("impasto: error: {}{} (try --help)", message.join(" "), tips.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_are_one_line() {
        let rendered = "error: unexpected argument '--colour' found\n\n  tip: a similar argument exists: \
                        '--color-transfer'\n\nUsage: impasto --output <OUT> <CONTENT> <STYLE>...\n\nFor \
                        more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(rendered),
            "impasto: error: unexpected argument '--colour' found; tip: a similar argument exists: \
             '--color-transfer' (try --help)"
        );
    }

    #[test]
    fn errors_are_one_line() {
        let e = anyhow::anyhow!("bad thing\n  at line 2\n").context("content image");
        assert_eq!(error_line(&e), "impasto: error: content image: bad thing at line 2");
    }
}
