//! Every command-line option explains itself in `--help`.

use clap::CommandFactory;
use switchboard::cli::Cli;

/// `path: --arg` of every argument without help text, clap's own help/version excepted.
fn undocumented(command: &clap::Command, path: &str, found: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        if help.trim().is_empty() {
            found.push(format!("{path}: {id}"));
        }
    }
    for sub in command.get_subcommands() {
        undocumented(sub, &format!("{path} {}", sub.get_name()), found);
    }
}

#[test]
fn every_argument_has_help_text() {
    let mut command = Cli::command();
    command.build();
    let mut found = Vec::new();
    undocumented(&command, "switchboard", &mut found);
    assert!(
        found.is_empty(),
        "arguments without a doc comment: {found:#?}"
    );
}

#[test]
fn the_walk_reaches_nested_arguments() {
    let mut command = Cli::command();
    command.build();
    let list = command
        .find_subcommand("events")
        .and_then(|events| events.find_subcommand("list"))
        .expect("events list");
    let ids: Vec<&str> = list.get_arguments().map(|a| a.get_id().as_str()).collect();
    assert!(
        ids.contains(&"event_type") && ids.contains(&"db"),
        "{ids:?}"
    );
}
