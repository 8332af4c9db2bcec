//! Bearer tokens with scopes (`--auth-tokens-file`): one token a line, as
//! `TOKEN SCOPE[,SCOPE…] [NAME]`, scopes `infer`, `admin` and `metrics`, `#` to the end of a line
//! a comment. The file is read again when it changes; a change that does not parse keeps the
//! tokens in force (and says why in the log). Both front ends ask [`Auth::check`] with the
//! token a request presents and the scope its route needs.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use subtle::ConstantTimeEq as _;

use crate::{Error, ErrorKind};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Inference, model metadata and status.
    Infer,
    /// The repository API (load, unload, index) and the admin APIs.
    Admin,
    /// `/metrics`.
    Metrics,
}

impl Scope {
    fn bit(self) -> u8 {
        match self {
            Scope::Infer => 1,
            Scope::Admin => 2,
            Scope::Metrics => 4,
        }
    }

    /// The scope's name in the tokens file.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Infer => "infer",
            Scope::Admin => "admin",
            Scope::Metrics => "metrics",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Scope::Infer, Scope::Admin, Scope::Metrics]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One token of the file.
struct Token {
    secret: Box<[u8]>,
    scopes: u8,
    /// What logs show instead of the secret: the file's name for it, or its line.
    name: Arc<str>,
}

impl std::fmt::Debug for Token {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The tokens of one reading of the file, indexed by a keyed hash of each secret.
///
/// Comparing a presented token with every secret in constant time costs ~170 ns a token (100
/// tokens: +17 µs a request, measured by `benches/auth.rs`). Instead the presented token is
/// hashed with SipHash under a random key (std's `RandomState`, drawn at each reading) and
/// compared, in constant time, only with the secrets of the same hash: what the time then says is
/// whether the keyed hash matched, which without the key says nothing of the secrets.
#[derive(Debug, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
    hasher: RandomState,
    /// Positions in `tokens` by the keyed hash of their secret.
    by_hash: HashMap<u64, Vec<usize>>,
}

impl Tokens {
    /// Parses the file's text; an error names the line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(secret), Some(scopes)) = (fields.next(), fields.next()) else {
                return Err(format!(
                    "line {number}: expected TOKEN SCOPE[,SCOPE...] [NAME], got one field"
                ));
            };
            let mut bits = 0;
            for scope in scopes.split(',') {
                let scope = Scope::parse(scope).ok_or_else(|| {
                    format!("line {number}: unknown scope '{scope}' (infer, admin, metrics)")
                })?;
                bits |= scope.bit();
            }
            let name = fields
                .next()
                .map_or_else(|| format!("line {number}"), str::to_owned);
            if let Some(extra) = fields.next() {
                return Err(format!(
                    "line {number}: unexpected '{extra}' after the name (names have no spaces)"
                ));
            }
            if tokens
                .iter()
                .any(|t: &Token| *t.secret == *secret.as_bytes())
            {
                // Reading the file, not a request: an early-exit comparison is fine here.
                return Err(format!("line {number}: the same token is given twice"));
            }
            tokens.push(Token {
                secret: secret.as_bytes().into(),
                scopes: bits,
                name: name.into(),
            });
        }
        let hasher = RandomState::new();
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, token) in tokens.iter().enumerate() {
            by_hash
                .entry(hasher.hash_one(&*token.secret))
                .or_default()
                .push(i);
        }
        Ok(Self {
            tokens,
            hasher,
            by_hash,
        })
    }

    /// The token `presented` is, if any: the secrets of its keyed hash (almost always none or
    /// one) are each compared in constant time, so the time taken says nothing of how much of a
    /// secret matched.
    fn find(&self, presented: &[u8]) -> Option<&Token> {
        let candidates = self.by_hash.get(&self.hasher.hash_one(presented))?;
        let mut found = None;
        for token in candidates.iter().filter_map(|&i| self.tokens.get(i)) {
            if bool::from(token.secret.ct_eq(presented)) {
                found = Some(token);
            }
        }
        found
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are none (then every protected request is refused).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// The tokens in force, read from a file and read again when it changes.
#[derive(Debug)]
pub struct Auth {
    path: PathBuf,
    tokens: RwLock<(Arc<Tokens>, Option<SystemTime>)>,
}

impl Auth {
    /// Reads `path`; an unreadable or malformed file is an error naming it.
    pub fn load(path: &Path) -> Result<Arc<Self>, String> {
        let (tokens, modified) = read(path)?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            tokens: RwLock::new((Arc::new(tokens), modified)),
        }))
    }

    /// Looks at the file every `every` on a thread of its own, for as long as `self` lives,
    /// and takes a changed file's tokens.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("quiver-auth-tokens".into())
            .spawn(move || {
                while let Some(auth) = weak.upgrade() {
                    auth.reload_if_changed();
                    drop(auth);
                    std::thread::sleep(every);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot watch the tokens file for changes: {e}");
        }
    }

    /// Reads the file again if its modification time changed.
    pub fn reload_if_changed(&self) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let known = self
            .tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1;
        if modified == known {
            return;
        }
        match read(&self.path) {
            Ok((tokens, modified)) => {
                tracing::info!(path = %self.path.display(), tokens = tokens.len(),
                    "tokens file read again");
                *self
                    .tokens
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    (Arc::new(tokens), modified);
            }
            Err(e) => {
                tracing::error!("{e}; the tokens read before stay in force");
                // Not again until the file changes once more.
                self.tokens
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .1 = modified;
            }
        }
    }

    /// Whether a request presenting `authorization` (the header's or metadata's value) may do
    /// what needs `scope`: the token's name when it may, else an unauthenticated (no or an
    /// unknown token) or permission-denied (a token without the scope) error.
    pub fn check(&self, authorization: Option<&[u8]>, scope: Scope) -> Result<Arc<str>, Error> {
        let Some(presented) = authorization.and_then(bearer) else {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "this server needs a token: send 'Authorization: Bearer TOKEN'",
            ));
        };
        let tokens = Arc::clone(
            &self
                .tokens
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0,
        );
        let Some(token) = tokens.find(presented) else {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "the token is not valid for this server",
            ));
        };
        if token.scopes & scope.bit() == 0 {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!(
                    "token '{}' does not have the '{}' scope this needs",
                    token.name,
                    scope.as_str()
                ),
            ));
        }
        Ok(Arc::clone(&token.name))
    }
}

/// The token of an `Authorization` value: `Bearer TOKEN` (the scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
        .filter(|token| !token.is_empty())
}

fn read(path: &Path) -> Result<(Tokens, Option<SystemTime>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let tokens =
        Tokens::parse(&text).map_err(|e| format!("the tokens file {}: {e}", path.display()))?;
    Ok((tokens, modified))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# token           scopes           name
s3cret-infer      infer            app
s3cret-admin      admin,metrics    ops   # the operators

s3cret-all        infer,admin,metrics
";

    fn auth(text: &str) -> (tempfile::TempDir, Arc<Auth>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, text).unwrap();
        let auth = Auth::load(&path).unwrap();
        (dir, auth)
    }

    #[test]
    fn tokens_get_their_scopes_and_only_those() {
        let (_dir, auth) = auth(FILE);
        assert_eq!(
            &*auth
                .check(Some(b"Bearer s3cret-infer"), Scope::Infer)
                .unwrap(),
            "app"
        );
        let e = auth
            .check(Some(b"Bearer s3cret-infer"), Scope::Admin)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(
            e.message.contains("'app'") && e.message.contains("admin"),
            "{}",
            e.message
        );
        assert_eq!(
            &*auth
                .check(Some(b"bearer s3cret-admin"), Scope::Metrics)
                .unwrap(),
            "ops"
        );
        assert_eq!(
            &*auth
                .check(Some(b"BEARER s3cret-all "), Scope::Admin)
                .unwrap(),
            "line 5"
        );
        for bad in [
            None,
            Some(&b"s3cret-all"[..]),
            Some(b"Bearer "),
            Some(b"Bearer nope"),
            Some(b"Basic s3cret-all"),
        ] {
            let e = auth.check(bad, Scope::Infer).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Unauthenticated, "{bad:?}");
        }
    }

    #[test]
    fn mistakes_name_their_line() {
        for (text, says) in [
            ("a infer\nb", "line 2: expected"),
            ("a infer,write", "unknown scope 'write'"),
            ("a infer x y", "unexpected 'y'"),
            ("a infer\na admin", "line 2: the same token"),
        ] {
            let e = Tokens::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        assert!(Tokens::parse("# nothing\n\n").unwrap().is_empty());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let tokens = Tokens::parse(FILE).unwrap();
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app") && shown.contains("<redacted>"));
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_ignored() {
        let (dir, auth) = auth("old infer\n");
        let path = dir.path().join("tokens");
        assert!(auth.check(Some(b"Bearer old"), Scope::Infer).is_ok());
        // A different modification time, as an editor's save makes it.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::write(&path, "new infer\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        auth.reload_if_changed();
        assert!(auth.check(Some(b"Bearer old"), Scope::Infer).is_err());
        assert!(auth.check(Some(b"Bearer new"), Scope::Infer).is_ok());
        std::fs::write(&path, "broken\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + Duration::from_secs(5))
            .unwrap();
        auth.reload_if_changed();
        assert!(auth.check(Some(b"Bearer new"), Scope::Infer).is_ok());
    }
}
