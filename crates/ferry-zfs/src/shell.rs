//! Building remote command lines: the remote side runs them through a shell, so every argument
//! is quoted here, and only values that passed ferry's checks become arguments at all.

/// Quotes one argument for a POSIX shell: single quotes, with `'` written as `'\''`.
///
/// Plain words (letters, digits and `_-./:=@,+%`) are left as they are, which keeps the
/// commands in error messages readable.
pub fn quote(argument: &str) -> String {
    let plain = !argument.is_empty()
        && argument
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@,+%".contains(c));
    if plain {
        argument.to_owned()
    } else {
        format!("'{}'", argument.replace('\'', r"'\''"))
    }
}

/// A command line with every argument quoted.
pub fn command_line<'a>(arguments: impl IntoIterator<Item = &'a str>) -> String {
    arguments
        .into_iter()
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_never_escape_their_quotes() {
        let cases = [
            "home",
            "/dev/disk/azure/scsi1",
            "rw=10.40.0.0/20",
            "",
            "a b",
            "$(reboot)",
            "it's; rm -rf /",
            "`x`",
        ];
        let quoted: Vec<String> = cases.iter().map(|case| quote(case)).collect();
        assert_eq!(
            quoted,
            [
                "home",
                "/dev/disk/azure/scsi1",
                "rw=10.40.0.0/20",
                "''",
                "'a b'",
                "'$(reboot)'",
                r"'it'\''s; rm -rf /'",
                "'`x`'",
            ]
        );
        assert_eq!(
            command_line(["zpool", "import", "-d", "/a b", "home"]),
            "zpool import -d '/a b' home"
        );
    }
}
