//! `azssh completions SHELL` and `azssh man`: generated from the clap definitions in `cli.rs`,
//! the one source of truth for every flag (help text, completions and man page alike).

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::error::AppError;
use crate::output;

/// The completion script for `args.shell`, on stdout.
pub fn completions(args: &CompletionsArgs) -> Result<(), AppError> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "azssh", &mut script);
    output::data(&String::from_utf8_lossy(&script));
    Ok(())
}

/// `azssh.1` on stdout, or every command's page written into `--dir`.
pub fn man(args: &ManArgs) -> Result<(), AppError> {
    let command = Cli::command();
    match &args.dir {
        Some(dir) => {
            let failed = |e: std::io::Error| {
                AppError::usage(
                    format!(
                        "cannot write man pages into `{}`: {}",
                        dir.display(),
                        e.to_string().to_lowercase()
                    ),
                    Some("`--dir` must be an existing directory you can write".into()),
                )
            };
            clap_mangen::generate_to(command, dir).map_err(failed)?;
            output::log(
                output::Level::Info,
                &format!(
                    "wrote azssh.1 and one page per command into {}",
                    dir.display()
                ),
            );
            Ok(())
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .map_err(|e| AppError::usage(format!("cannot render the man page: {e}"), None))?;
            output::data(&String::from_utf8_lossy(&page));
            Ok(())
        }
    }
}
