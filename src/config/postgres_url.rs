//! PostgreSQL URLs, pure: [`split_url`] takes libpq's TLS parameters
//! (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) out of the URL the
//! driver parses and validates them into [`TlsOptions`]; [`redact_url`]
//! hides a URL's secrets for messages. The configuration check and the
//! store (`store/postgres.rs`, and `store/postgres_tls.rs`, which reads the
//! certificate files and builds the TLS connector) both use them. Nothing
//! here reads a file, opens a connection or imports the store.

use std::path::PathBuf;

use super::model::REDACTED;

/// The URL parameters read here; the driver never sees them.
const TLS_PARAMETERS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// libpq's other TLS parameters: refused by name rather than ignored, so
/// that nobody believes a certificate revocation list is being checked.
const UNSUPPORTED_PARAMETERS: [&str; 9] = [
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslcertmode",
    "sslsni",
    "sslcompression",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requiressl",
];

/// `sslmode`: libpq's five values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// TLS when the server offers it, plain otherwise (the default, as in
    /// libpq).
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS, and the server's certificate chain must lead to a trusted CA.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the URL's host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> anyhow::Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => anyhow::bail!(
                "sslmode: unsupported value {other:?} (expected disable, prefer, require, verify-ca or verify-full)"
            ),
        })
    }

    /// The name as written in a URL.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted CA certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// `sslrootcert=system`: the system's trusted roots.
    System,
    /// `sslrootcert=PATH`: the PEM certificates in that file.
    File(PathBuf),
}

/// `sslcert` and `sslkey`: a client certificate (PEM, the chain) and its
/// unencrypted private key (PEM: PKCS#8, PKCS#1 or SEC1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// `sslcert`.
    pub certificate: PathBuf,
    /// `sslkey`.
    pub key: PathBuf,
}

/// The TLS settings of a PostgreSQL URL, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// `sslmode` (`prefer` when absent; `verify-full` when absent and
    /// `sslrootcert=system`).
    pub mode: SslMode,
    /// `sslrootcert`.
    pub root_certs: Option<RootCerts>,
    /// `sslcert` and `sslkey`.
    pub client_certificate: Option<ClientCertificate>,
}

impl TlsOptions {
    /// Validates the TLS parameters (each key at most once is not required:
    /// the last value wins, as in libpq). Empty values count as absent.
    fn from_parameters(parameters: &[(String, String)]) -> anyhow::Result<TlsOptions> {
        let value = |key: &str| {
            parameters
                .iter()
                .rev()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.as_str())
                .filter(|value| !value.is_empty())
        };
        let root_certs = value("sslrootcert").map(|root| match root {
            "system" => RootCerts::System,
            path => RootCerts::File(PathBuf::from(path)),
        });
        let mode = match (value("sslmode"), &root_certs) {
            (Some(mode), _) => SslMode::parse(mode)?,
            (None, Some(RootCerts::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        };
        if root_certs == Some(RootCerts::System) && mode != SslMode::VerifyFull {
            // As libpq: the system's roots vouch for any host they signed,
            // so only a host name check makes them mean something.
            anyhow::bail!(
                "sslmode: {:?} may not be used with sslrootcert=system (use verify-full)",
                mode.name()
            );
        }
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_certs.is_none() {
            anyhow::bail!(
                "sslmode: {} needs sslrootcert=PATH (a PEM file of the CA certificates to trust) or sslrootcert=system",
                mode.name()
            );
        }
        let client_certificate = match (value("sslcert"), value("sslkey")) {
            (None, None) => None,
            (Some(certificate), Some(key)) => Some(ClientCertificate {
                certificate: PathBuf::from(certificate),
                key: PathBuf::from(key),
            }),
            (Some(_), None) => anyhow::bail!("sslcert: set, but sslkey is not (give both)"),
            (None, Some(_)) => anyhow::bail!("sslkey: set, but sslcert is not (give both)"),
        };
        Ok(TlsOptions {
            mode,
            root_certs,
            client_certificate,
        })
    }
}

/// Splits a `postgres://` URL into the URL the driver parses (the TLS
/// parameters taken out, everything else exactly as written) and the
/// validated [`TlsOptions`]. Errors name the parameter; libpq's TLS
/// parameters that regkeeper does not support are errors too.
pub fn split_url(url: &str) -> anyhow::Result<(String, TlsOptions)> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut parameters: Vec<(String, String)> = Vec::new();
    for segment in query.split('&').filter(|segment| !segment.is_empty()) {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        let key = percent_decode(key);
        if TLS_PARAMETERS.contains(&key.as_str()) {
            parameters.push((key, percent_decode(value)));
        } else if UNSUPPORTED_PARAMETERS.contains(&key.as_str()) {
            anyhow::bail!(
                "{key}: not supported (regkeeper reads sslmode, sslrootcert, sslcert and sslkey)"
            );
        } else {
            kept.push(segment);
        }
    }
    let options = TlsOptions::from_parameters(&parameters)?;
    let driver_url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((driver_url, options))
}

/// Decodes `%XX` escapes of a URL component (`+` stays `+`, as in libpq).
/// A `%` not followed by two hex digits stays as written; bytes that are
/// not UTF-8 become U+FFFD.
pub(super) fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// URL parameters whose values are secrets.
const SECRET_PARAMETERS: [&str; 2] = ["password", "sslpassword"];

/// A database URL for messages and `Debug` output: the password of
/// `scheme://user:password@host` and the values of the `password` and
/// `sslpassword` parameters replaced by `<redacted>`, everything else
/// exactly as written. Any text will do, a URL the url crate refuses
/// included, so that an error about a bad URL can show it; a key/value
/// connection string (`host=db password=...`) has its `password=` hidden.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_key_values(url);
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    // The user information ends at the authority's last `@`, as the url
    // crate reads it. In a URL it refuses, a password may hold a `/` or a
    // `?`: there the last `@` anywhere ends it, so that none of it shows.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = match rest[..authority_end].rfind('@') {
        Some(at) => Some(at),
        None if url::Url::parse(url).is_err() => rest.rfind('@'),
        None => None,
    };
    let (userinfo, after_userinfo) = rest.split_at(at.unwrap_or(0));
    let userinfo = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{REDACTED}"),
        None => userinfo.to_string(),
    };
    let after_userinfo = match after_userinfo.split_once('?') {
        Some((before_query, query_and_fragment)) => {
            let (query, fragment) = query_and_fragment.split_at(
                query_and_fragment
                    .find('#')
                    .unwrap_or(query_and_fragment.len()),
            );
            format!("{before_query}?{}{fragment}", redact_parameters(query))
        }
        None => after_userinfo.to_string(),
    };
    format!("{scheme}{userinfo}{after_userinfo}")
}

/// A URL query with the values of [`SECRET_PARAMETERS`] redacted, the rest
/// as written.
fn redact_parameters(query: &str) -> String {
    query
        .split('&')
        .map(|segment| match segment.split_once('=') {
            Some((key, _)) if SECRET_PARAMETERS.contains(&percent_decode(key).as_str()) => {
                format!("{key}={REDACTED}")
            }
            _ => segment.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A key/value connection string with `password=...` redacted.
fn redact_key_values(text: &str) -> String {
    text.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((key, _)) if SECRET_PARAMETERS.contains(&key) => format!("{key}={REDACTED}"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(url: &str) -> String {
        format!("{:#}", split_url(url).expect_err("invalid url"))
    }

    #[test]
    fn invalid_tls_parameters_are_errors_naming_the_parameter() {
        assert_eq!(
            error("postgres://u@db/reg?sslmode=verify_full"),
            "sslmode: unsupported value \"verify_full\" (expected disable, prefer, require, verify-ca or verify-full)"
        );
        assert!(error("postgres://u@db/reg?sslmode=verify-full")
            .starts_with("sslmode: verify-full needs sslrootcert=PATH"));
        assert!(error("postgres://u@db/reg?sslmode=verify-ca")
            .starts_with("sslmode: verify-ca needs sslrootcert=PATH"));
        assert_eq!(
            error("postgres://u@db/reg?sslmode=require&sslrootcert=system"),
            "sslmode: \"require\" may not be used with sslrootcert=system (use verify-full)"
        );
        assert_eq!(
            error("postgres://u@db/reg?sslcert=c.pem"),
            "sslcert: set, but sslkey is not (give both)"
        );
        assert_eq!(
            error("postgres://u@db/reg?sslkey=k.pem"),
            "sslkey: set, but sslcert is not (give both)"
        );
        assert!(error("postgres://u@db/reg?sslcrl=crl.pem").starts_with("sslcrl: not supported"));
        assert!(
            error("postgres://u@db/reg?sslpassword=x").starts_with("sslpassword: not supported")
        );
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://app:secret@db:5432/reg"),
            "postgres://app:<redacted>@db:5432/reg"
        );
        assert_eq!(
            redact_url("postgres://app@db/reg?password=secret&sslmode=disable"),
            "postgres://app@db/reg?password=<redacted>&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://app@db/reg"), "postgres://app@db/reg");
        // The other parameters stay as written (a path is not re-encoded).
        assert_eq!(
            redact_url("postgres://app:secret@db/reg?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslpassword=s"),
            "postgres://app:<redacted>@db/reg?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslpassword=<redacted>"
        );
        assert_eq!(
            redact_url("host=db password=secret user=app"),
            "host=db password=<redacted> user=app"
        );
    }

    #[test]
    fn redact_url_keeps_a_valid_url_as_written_and_hides_all_of_a_refused_urls_password() {
        // Valid: the user information is the authority's, as the url crate
        // reads it; an `@` further on is no password.
        assert_eq!(
            redact_url("postgres://db:5432/reg?application_name=me@host"),
            "postgres://db:5432/reg?application_name=me@host"
        );
        assert_eq!(
            redact_url("postgresql://app:p%40ss@db/reg?Password=kept&%70assword=x#f"),
            "postgresql://app:<redacted>@db/reg?Password=kept&%70assword=<redacted>#f"
        );
        // Refused by the url crate (a `/` or `?` in the password): the last
        // `@` ends the password, so none of it shows.
        assert_eq!(
            redact_url("postgres://app:pa/ss@db/reg"),
            "postgres://app:<redacted>@db/reg"
        );
        assert_eq!(
            redact_url("mysql://app:pa?ss@db/reg?password=x"),
            "mysql://app:<redacted>@db/reg?password=<redacted>"
        );
    }

    #[test]
    fn percent_decode_keeps_an_escape_cut_by_a_multibyte_character_instead_of_panicking() {
        // `%a` then `é`: the hand-written decoder sliced the text inside
        // `é` and panicked.
        assert_eq!(percent_decode("%aé"), "%aé");
        // Escapes of two hex digits decode as before, lossily where the
        // bytes are not UTF-8; anything else stays as written.
        assert_eq!(percent_decode("s%40cret%2Fx+y"), "s@cret/x+y");
        assert_eq!(percent_decode("%C3%A9%ff"), "é\u{fffd}");
        assert_eq!(percent_decode("50%off%4"), "50%off%4");
        assert_eq!(percent_decode("%+41"), "%+41");
    }
}
