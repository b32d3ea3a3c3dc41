//! Shell completions and man pages, generated from a program's clap definition so they never
//! drift from `--help`: `PROGRAM completions bash|zsh|fish|elvish|powershell` and
//! `PROGRAM man [COMMAND]` print them on stdout (`pp-peer man get` is the page `pp-peer-get(1)`,
//! as git names its pages).

use clap::Command;
use std::io::Write;

pub use clap_complete::Shell;

/// Writes the completion script for `shell`.
pub fn completions(mut cmd: Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes the man page (roff) of the program, or of one of its subcommands (`PROGRAM-SUB`).
pub fn man(cmd: Command, sub: Option<&str>, out: &mut dyn Write) -> std::io::Result<()> {
    let cmd = cmd.disable_help_subcommand(true);
    let page = match sub {
        None => cmd,
        Some(name) => {
            let Some(s) = cmd.find_subcommand(name) else {
                let known: Vec<_> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
                return Err(std::io::Error::other(format!("no command {name:?} (known: {})", known.join(", "))));
            };
            s.clone().name(format!("{}-{}", cmd.get_name(), s.get_name()))
        }
    };
    clap_mangen::Man::new(page).render(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Command {
        Command::new("demo")
            .about("A demo program")
            .arg(clap::Arg::new("max-storage").long("max-storage").help("Most bytes kept"))
            .subcommand(Command::new("get").about("Download a file"))
    }

    #[test]
    fn completions_and_man_name_every_option() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(demo(), shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("max-storage") && text.contains("get"), "{shell}: {text}");
        }
        let mut out = Vec::new();
        man(demo(), None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(".TH demo") && text.contains("max\\-storage"), "{text}");
        let mut out = Vec::new();
        man(demo(), Some("get"), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("demo\\-get") && text.contains("Download a file"), "{text}");
        assert!(man(demo(), Some("nope"), &mut Vec::new()).is_err());
    }
}
