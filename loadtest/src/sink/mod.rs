//! (helper fills this in)

/// Command-line arguments.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the subcommand until done.
pub fn run(_args: Args) -> anyhow::Result<()> {
    todo!()
}
