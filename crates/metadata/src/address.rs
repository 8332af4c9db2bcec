//! Store URLs: which backend, and how to show one without its password.

use std::path::PathBuf;

use crate::MetadataError;

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    /// An SQLite file, relative paths made absolute against the current directory.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, as given.
    Postgres(String),
}

/// Parses `sqlite:PATH`, `sqlite://PATH`, `postgres://…` or `postgresql://…`.
pub(crate) fn parse(url: &str) -> Result<Address, MetadataError> {
    let invalid = |message: String| MetadataError::InvalidUrl {
        url: redact(url),
        message,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Address::Postgres(url.to_owned()));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(invalid(
            "expected sqlite:PATH, postgres://… or postgresql://…".into(),
        ));
    };
    // `sqlite:///abs` and `sqlite://rel` both name a path after the `//`.
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() {
        return Err(invalid("no file path after sqlite:".into()));
    }
    let path = PathBuf::from(path);
    if path.is_absolute() {
        return Ok(Address::Sqlite(path));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| invalid(format!("relative path, and no current directory: {e}")))?;
    Ok(Address::Sqlite(cwd.join(path)))
}

/// A PostgreSQL URL without its password, for logs and errors: the password of the user info
/// (`user:password@`) and any `password=` query parameter are dropped.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end);
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    // The last `@` ends the user info: a password may hold an unescaped `@` or `/`.
    let authority_and_path = match before_query.rfind('@') {
        Some(at) => {
            let (userinfo, host) = before_query.split_at(at);
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}{host}")
        }
        None => before_query.to_owned(),
    };
    let mut out = format!("{head}{authority_and_path}");
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let key = pair.split('=').next().unwrap_or_default();
                !key.eq_ignore_ascii_case("password")
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            parse("sqlite:/data/m.sqlite3"),
            Ok(Address::Sqlite("/data/m.sqlite3".into()))
        );
        assert_eq!(
            parse("sqlite:///data/m.sqlite3"),
            Ok(Address::Sqlite("/data/m.sqlite3".into()))
        );
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(
            parse("sqlite:data/m.sqlite3"),
            Ok(Address::Sqlite(cwd.join("data/m.sqlite3")))
        );
        assert_eq!(
            parse("sqlite://data/m.sqlite3"),
            Ok(Address::Sqlite(cwd.join("data/m.sqlite3")))
        );
        assert!(parse("sqlite:").is_err());
    }

    #[test]
    fn postgres_urls_and_others() {
        assert_eq!(
            parse("postgresql://h/db"),
            Ok(Address::Postgres("postgresql://h/db".into()))
        );
        let err = parse("mysql://u:secret@h/db").expect_err("mysql");
        let text = err.to_string();
        assert!(text.contains("mysql://u@h/db"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn redaction_drops_every_password() {
        assert_eq!(
            redact("postgres://quiver:s3cret@db:5432/quiver"),
            "postgres://quiver@db:5432/quiver"
        );
        assert_eq!(
            redact("postgres://quiver:p@ss/w@db/quiver?sslmode=disable&password=x"),
            "postgres://quiver@db/quiver?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://db/quiver?password=x"),
            "postgres://db/quiver"
        );
        assert_eq!(
            redact("postgres://quiver@db/quiver"),
            "postgres://quiver@db/quiver"
        );
    }
}
