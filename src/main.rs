//! `tierkv`: the one binary. It parses the command line and wires the library crates together;
//! it holds no logic of its own.

use clap::Parser;

/// tierkv: a distributed key-value database that unifies a cache and a store.
#[derive(Debug, Parser)]
#[command(name = "tierkv", version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
