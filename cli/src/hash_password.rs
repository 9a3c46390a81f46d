//! `chatd hash-password`: an operator entry for the config file.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use clap::Args;

/// Reads the password without echo from a terminal, or as the first line
/// of stdin otherwise, and prints a `[[operators]]` table.
#[derive(Debug, Args)]
pub(crate) struct HashPasswordArgs {
    /// The operator's name, as used with `#oper NAME PASSWORD`.
    #[arg(long, default_value = "admin")]
    name: String,
}

pub(crate) fn run(args: &HashPasswordArgs) -> anyhow::Result<()> {
    chatd_core::Nick::parse(&args.name)
        .map_err(|error| anyhow::anyhow!("invalid operator name {:?}: {error}", args.name))?;
    let password = read_password()?;
    if password.is_empty() {
        bail!("the password is empty");
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("cannot hash the password: {error}"))?;
    let entry = format!(
        "[[operators]]\nname = {}\npassword_hash = {}\n",
        toml::Value::String(args.name.clone()),
        toml::Value::String(hash.to_string()),
    );
    print!("{entry}");
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("operator password: ")
            .context("cannot read the password");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
