//! `auditlake completions SHELL` and `auditlake man`: generated from the clap definition the
//! binary parses with (`cli::command()`), so they cannot drift from the real flags.

use std::io::Write;

use anyhow::Context;

use crate::EXIT_OK;
use crate::cli::{CompletionsArgs, ManArgs};

/// The name the scripts complete and the pages are titled with.
const BIN: &str = "auditlake";

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    out.write_all(&completion_script(args.shell))?;
    Ok(EXIT_OK)
}

pub fn completion_script(shell: clap_complete::Shell) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut crate::cli::command(), BIN, &mut buf);
    buf
}

pub fn man(args: &ManArgs) -> anyhow::Result<u8> {
    match &args.out_dir {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&man_page()?)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            // One page per (sub)command, `auditlake-rules-list.1` style, as git and cargo ship them.
            clap_mangen::generate_to(crate::cli::command(), dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
        }
    }
    Ok(EXIT_OK)
}

/// `auditlake.1`: the synopsis, every option and the list of commands, in roff.
pub fn man_page() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(crate::cli::command())
        .render(&mut buf)
        .context("rendering the manual page")?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator's commands, as a user types them.
    fn operator_commands() -> Vec<String> {
        crate::cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name().to_owned())
            .collect()
    }

    #[test]
    fn completions_name_every_command_and_nested_ones() {
        let commands = operator_commands();
        assert!(commands.len() >= 15, "{commands:?}");
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = String::from_utf8(completion_script(shell)).unwrap();
            for c in commands.iter().map(String::as_str).chain(["import-sigma"]) {
                assert!(script.contains(c), "{shell}: {c} missing");
            }
            // Flags of nested commands (fish writes them `-l dry-run`).
            assert!(script.contains("no-builtin-rules"), "{shell}");
            assert!(script.contains("dry-run"), "{shell}");
        }
    }

    #[test]
    fn man_page_lists_the_commands_and_sets_dev_tools_apart() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(page.contains(".TH auditlake 1"), "{page}");
        assert!(page.contains(".SH NAME"));
        for c in operator_commands() {
            // roff writes a hyphen as `\-` (`pg\-passwd`).
            assert!(
                page.contains(&c.replace('-', "\\-")),
                "{c} missing from the man page"
            );
        }
        // Hidden from the command list, named in the developer-tools section of the help text.
        assert!(page.contains("Developer tools"));
        assert!(page.contains("bench\\-webhook"), "{page}");
    }

    #[test]
    fn help_lists_dev_tools_apart_from_the_operator_commands() {
        let help = crate::cli::command().render_long_help().to_string();
        let (commands, after) = help
            .split_once("Developer tools")
            .expect("developer tools section");
        for tool in crate::cli::DEV_TOOLS {
            assert!(
                !commands.contains(&format!("  {tool} ")),
                "{tool} in the command list"
            );
            assert!(
                after.contains(&format!("  {tool} ")),
                "{tool} not in its section"
            );
        }
        assert!(commands.contains("  serve "));
        // They still run (and have their own help).
        for tool in crate::cli::DEV_TOOLS {
            assert!(crate::cli::command().find_subcommand(tool).is_some());
        }
    }
}
