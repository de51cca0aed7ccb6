//! URLs in messages: passwords masked ([`redact`]) and what is wrong with a URL named without
//! printing it ([`url_problem`]).
//!
//! Every error that may carry a URL (the database's, Redis's, a third party's) goes through
//! [`redact`] before it is printed or logged: the drivers echo the URL they were given, password
//! included, when they cannot parse it.

/// `text` with the password of every URL in it replaced by `***`
/// (`postgres://user:***@host/db`).
///
/// A URL runs from `://` to the next whitespace, or, when it stops inside a `user:password`
/// (a space in the password), to the end of the word holding the next `@` on its line. When
/// what stands before its last `@` is not a plain user and password (it holds a `/`, `?` or `#`,
/// as when a password has an unencoded `#` and the URL does not parse), everything between
/// `://` and that `@` is masked.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let (url, tail) = after.split_at(url_end(after));
        out.push_str(&mask_userinfo(url));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Where the URL starting `after` (the text after its `://`) ends.
fn url_end(after: &str) -> usize {
    let word = after.find(char::is_whitespace).unwrap_or(after.len());
    let first = &after[..word];
    // Still inside `user:password` (no `@` and no `/` yet): the password has a space, and the
    // URL goes on to the next `@` on the line, before any other URL.
    if first.contains(['@', '/']) || !first.contains(':') {
        return word;
    }
    let line = &after[..after.find('\n').unwrap_or(after.len())];
    let line = &line[..line.find("://").unwrap_or(line.len())];
    match line.rfind('@') {
        Some(at) => {
            at + after[at..]
                .find(char::is_whitespace)
                .unwrap_or(after.len() - at)
        }
        None => word,
    }
}

/// The part of a URL after `://`, its password masked.
fn mask_userinfo(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = url.split_at(at);
    if userinfo.contains(['/', '?', '#']) {
        return format!("***{host}");
    }
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***{host}"),
        None => url.to_owned(),
    }
}

/// What is wrong with `url`, said without printing it, or `None` when it parses and its scheme
/// is one of `schemes`: an unsupported scheme, a character the user name or password must
/// percent-encode, a port that is not a number, a bad host.
pub fn url_problem(url: &str, schemes: &[&str]) -> Option<String> {
    let expected = schemes
        .iter()
        .map(|s| format!("{s}://"))
        .collect::<Vec<_>>()
        .join(" or ");
    let scheme = url.split_once(':').map(|(s, _)| s).filter(|s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let Some(scheme) = scheme else {
        return Some(format!(
            "it does not start with a scheme (expected {expected})"
        ));
    };
    if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Some(format!(
            "the scheme {scheme}:// is not supported (expected {expected})"
        ));
    }
    let parsed = url::Url::parse(url);
    // An unencoded `#`, `?` or `/` before the `@` ends the authority early: the host and port
    // become parts of the password (or the URL does not parse at all).
    let userinfo = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo);
    if let Some(userinfo) = userinfo {
        let unencoded = match &parsed {
            Err(_) => userinfo.find(['#', '?', '/']),
            Ok(_) => userinfo.find('#'),
        };
        if let Some(i) = unencoded {
            let c = &userinfo[i..=i];
            let part = match userinfo.find(':') {
                Some(colon) if colon < i => "password",
                _ => "user name",
            };
            let code = match c {
                "#" => "%23",
                "?" => "%3F",
                _ => "%2F",
            };
            return Some(format!(
                "the {part} contains `{c}`, which a URL must percent-encode (write {code})"
            ));
        }
    }
    let e = parsed.err()?;
    Some(match e {
        url::ParseError::EmptyHost => "it has no host".into(),
        url::ParseError::InvalidPort => "the port is not a number from 0 to 65535".into(),
        url::ParseError::IdnaError | url::ParseError::InvalidDomainCharacter => {
            "the host name is not valid".into()
        }
        url::ParseError::InvalidIpv4Address => "the host's IPv4 address is not valid".into(),
        url::ParseError::InvalidIpv6Address => "the host's IPv6 address is not valid".into(),
        // The parser's messages name the problem, never the input.
        other => format!("it does not parse: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_wherever_a_url_stands() {
        assert_eq!(
            redact("postgres://lazona:s3cret@db:5432/lazona"),
            "postgres://lazona:***@db:5432/lazona"
        );
        assert_eq!(redact("redis://:pw@cache"), "redis://:***@cache");
        assert_eq!(
            redact("The connection string 'mysql://u:Secr3t@host/x' has no supporting driver."),
            "The connection string 'mysql://u:***@host/x' has no supporting driver."
        );
        assert_eq!(
            redact("a postgres://a:b@h/x and redis://c:d@r:6379/0 too"),
            "a postgres://a:***@h/x and redis://c:***@r:6379/0 too"
        );
        // A password with a colon keeps nothing after the user name.
        assert_eq!(redact("redis://u:a:b@r"), "redis://u:***@r");
    }

    #[test]
    fn a_url_that_does_not_parse_loses_everything_before_its_last_at() {
        assert_eq!(
            redact("'postgres://postgres:Secr3t#1@127.0.0.1:5432/lz' cannot be parsed"),
            "'postgres://***@127.0.0.1:5432/lz' cannot be parsed"
        );
        assert_eq!(
            redact("postgres://u:a/b?c@h/db"),
            "postgres://***@h/db",
            "an unencoded / or ? in the password"
        );
        assert_eq!(redact("postgres://u:p@w@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact("cannot connect to postgres://u:my pass@h/db: refused"),
            "cannot connect to postgres://u:***@h/db: refused",
            "a space in the password"
        );
        assert_eq!(
            redact("redis://:a b c@r:6379\nnext line a@b"),
            "redis://:***@r:6379\nnext line a@b"
        );
    }

    #[test]
    fn text_without_passwords_is_unchanged() {
        for text in [
            "sqlite://lazona.db?mode=rwc",
            "https://shop.example/wp-json",
            "redis://user@cache",
            "https://host:8080 is down",
            "https://host:8080/x mailed to admin@example.coop",
            "no url here: a@b",
            "",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    const DB: &[&str] = &["postgres", "postgresql", "sqlite"];

    #[test]
    fn url_problems_are_named_without_the_url() {
        let cases = [
            (
                "postgres://postgres:Secr3t#1@127.0.0.1:5432/lz",
                "the password contains `#`, which a URL must percent-encode (write %23)",
            ),
            (
                "postgres://postgres:123#1@127.0.0.1:5432/lz",
                "the password contains `#`, which a URL must percent-encode (write %23)",
            ),
            (
                "postgres://postgres:Se/cr3t@127.0.0.1/lz",
                "the password contains `/`, which a URL must percent-encode (write %2F)",
            ),
            (
                "postgres://postgres:Secr3t@127.0.0.1:port/lz",
                "the port is not a number from 0 to 65535",
            ),
            (
                "mysql://u:Secr3t@host/x",
                "the scheme mysql:// is not supported (expected postgres:// or postgresql:// or sqlite://)",
            ),
            (
                "u:Secr3t@host/x",
                "the scheme u:// is not supported (expected postgres:// or postgresql:// or sqlite://)",
            ),
            (
                "Secr3t",
                "it does not start with a scheme (expected postgres:// or postgresql:// or sqlite://)",
            ),
        ];
        for (url, problem) in cases {
            let said = url_problem(url, DB);
            assert_eq!(said.as_deref(), Some(problem), "{url}");
            assert!(!problem.contains("Secr3t"), "{problem}");
        }
    }

    #[test]
    fn good_urls_have_no_problem() {
        for url in [
            "postgres://postgres:Secr3t%231@127.0.0.1:5432/lz",
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgresql://u:p@db/lazona?sslmode=require",
            "postgres://u:p@w@h/db",
            "sqlite://lazona.db?mode=rwc",
            "sqlite::memory:",
            "sqlite:lazona.db",
        ] {
            assert_eq!(url_problem(url, DB), None, "{url}");
        }
    }
}
