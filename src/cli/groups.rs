//! `trailkeep groups`: list consumer groups, reset or delete one.

use std::io::Write;
use std::path::Path;

use crate::cli::format::format_time_us;
use crate::cli::{open_existing_store, parse_time_us, stdout_err, CliError};
use crate::{Offset, ResetTo};

/// Arguments of `groups`.
#[derive(clap::Args, Debug)]
pub struct GroupsArgs {
    /// The topic.
    pub topic: String,
    /// `reset <group> --to ...` or `delete <group>`; without it, list groups.
    #[command(subcommand)]
    pub action: Option<GroupsAction>,
}

/// `groups` sub-commands.
#[derive(clap::Subcommand, Debug)]
pub enum GroupsAction {
    /// Move a group's cursor: `--to earliest`, `--to latest`, `--to offset N`, `--to time T`.
    Reset {
        /// The group.
        group: String,
        /// Where to: earliest | latest | offset N | time T (RFC 3339 or epoch ms).
        #[arg(long, num_args = 1..=2, required = true)]
        to: Vec<String>,
    },
    /// Delete a group.
    Delete {
        /// The group.
        group: String,
    },
}

fn parse_reset(to: &[String]) -> Result<ResetTo, CliError> {
    // `--to offset 5` and `--to "offset 5"` alike.
    let words: Vec<&str> = to.iter().flat_map(|w| w.split_whitespace()).collect();
    match words.as_slice() {
        ["earliest"] => Ok(ResetTo::Earliest),
        ["latest"] => Ok(ResetTo::Latest),
        ["offset", n] => n
            .parse()
            .map(|n| ResetTo::Offset(Offset(n)))
            .map_err(|_| CliError::Usage(format!("--to offset {n}: not a number"))),
        ["time", t] => parse_time_us(t)
            .map(ResetTo::TimeUs)
            .map_err(|e| CliError::Usage(format!("--to time: {e}"))),
        _ => Err(CliError::Usage(format!(
            "--to {}: expected earliest, latest, offset N or time T",
            words.join(" ")
        ))),
    }
}

/// Runs `groups`.
///
/// # Errors
/// Engine errors, bad `--to` values.
pub fn run(dir: &Path, args: GroupsArgs) -> Result<(), CliError> {
    let store = open_existing_store(dir)?;
    let topic = store.topic(&args.topic)?;
    topic.refresh()?;
    let mut out = std::io::stdout().lock();
    match args.action {
        None => {
            writeln!(
                out,
                "{:<32} {:>12} {:>12} {:>10}  committed at",
                "group", "position", "end", "lag"
            )
            .map_err(stdout_err)?;
            for g in topic.groups()? {
                let note = if g.behind_start {
                    "  (position deleted by retention)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{:<32} {:>12} {:>12} {:>10}  {}{note}",
                    g.name,
                    g.committed,
                    topic.end_offset(),
                    g.lag,
                    format_time_us(g.committed_at_us).unwrap_or_else(|| format!("{} µs", g.committed_at_us))
                )
                .map_err(stdout_err)?;
            }
        }
        Some(GroupsAction::Reset { group, to }) => {
            let offset = topic.reset_group(&group, parse_reset(&to)?)?;
            writeln!(out, "{group} {offset}").map_err(stdout_err)?;
        }
        Some(GroupsAction::Delete { group }) => {
            topic.delete_group(&group)?;
            note!("deleted group {group}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &[&str]) -> Vec<String> {
        text.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn reset_targets_parse_as_separate_or_joined_words() {
        assert_eq!(parse_reset(&words(&["earliest"])).unwrap(), ResetTo::Earliest);
        assert_eq!(parse_reset(&words(&["latest"])).unwrap(), ResetTo::Latest);
        for form in [&["offset", "7"][..], &["offset 7"], &[" offset  7 "]] {
            assert_eq!(
                parse_reset(&words(form)).unwrap(),
                ResetTo::Offset(Offset(7)),
                "{form:?}"
            );
        }
        for form in [&["time", "1000"][..], &["time 1000"]] {
            assert_eq!(
                parse_reset(&words(form)).unwrap(),
                ResetTo::TimeUs(1_000_000),
                "{form:?}"
            );
        }
        for bad in [
            &["7"][..],
            &["offset"],
            &["offset x"],
            &["offset 7 8"],
            &["time", "never"],
            &["soon"],
        ] {
            let err = parse_reset(&words(bad)).unwrap_err().to_string();
            assert!(err.starts_with("--to"), "{bad:?}: {err}");
        }
    }
}
