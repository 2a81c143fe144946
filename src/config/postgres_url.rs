//! PostgreSQL URLs, pure: [`split_url`] takes libpq's TLS parameters
//! (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) out of the URL the
//! driver parses and validates them into [`TlsOptions`]; [`redact_url`]
//! hides a URL's secrets for messages. The configuration check and the
//! store (`store/postgres.rs`, and `store/postgres_tls.rs`, which reads the
//! certificate files and builds the TLS connector) both use them. Nothing
//! here reads a file, opens a connection or imports the store.

use std::path::PathBuf;

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

/// A PostgreSQL URL with any password replaced by `***`, for messages. The
/// other parameters stay exactly as written.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            if let Some(query) = parsed.query() {
                let redacted = query
                    .split('&')
                    .map(|segment| match segment.split_once('=') {
                        Some((key, _))
                            if SECRET_PARAMETERS.contains(
                                &percent_encoding::percent_decode_str(key)
                                    .decode_utf8_lossy()
                                    .as_ref(),
                            ) =>
                        {
                            format!("{key}=***")
                        }
                        _ => segment.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("&");
                parsed.set_query(Some(&redacted));
            }
            parsed.to_string()
        }
        // Key/value connection strings: hide `password=...`.
        Err(_) => url
            .split_whitespace()
            .map(|part| match part.split_once('=') {
                Some((key, _)) if SECRET_PARAMETERS.contains(&key) => format!("{key}=***"),
                _ => part.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
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
            "postgres://app:***@db:5432/reg"
        );
        assert_eq!(
            redact_url("postgres://app@db/reg?password=secret&sslmode=disable"),
            "postgres://app@db/reg?password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://app@db/reg"), "postgres://app@db/reg");
        // The other parameters stay as written (a path is not re-encoded).
        assert_eq!(
            redact_url("postgres://app:secret@db/reg?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslpassword=s"),
            "postgres://app:***@db/reg?sslmode=verify-full&sslrootcert=/etc/ca.pem&sslpassword=***"
        );
        assert_eq!(
            redact_url("host=db password=secret user=app"),
            "host=db password=*** user=app"
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
