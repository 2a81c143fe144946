//! TLS for PostgreSQL connections, the way libpq does it: the
//! `TlsOptions` that `config::postgres_url::split_url` reads from the
//! URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` (pure, shared with
//! the configuration check) become a rustls client configuration behind the
//! driver's `MakeTlsConnect` (tokio-postgres-rustls): what the server's
//! certificate is checked for, the driver's own mode (it knows only three of
//! the five) and `TlsOptions::connector`, which reads the certificate
//! files. This file opens no connection, never sees a password and knows
//! nothing of the domain.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::postgres_url::{RootCerts, SslMode, TlsOptions};

/// What the server's certificate is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCheck {
    /// Nothing: the session is encrypted, but anyone in the middle could
    /// present a certificate.
    Nothing,
    /// The chain leads to a trusted CA.
    Chain,
    /// The chain, and the certificate names the URL's host.
    ChainAndHostName,
}

// The options are the configuration's; what they mean for a connection
// (checks, the driver's mode, the connector) is the store's.
impl TlsOptions {
    /// What the server's certificate is checked for. As in libpq, `prefer`
    /// and `require` check the chain when `sslrootcert` is given.
    pub fn server_check(&self) -> ServerCheck {
        match (self.mode, &self.root_certs) {
            (SslMode::VerifyFull, _) => ServerCheck::ChainAndHostName,
            (SslMode::VerifyCa, _) => ServerCheck::Chain,
            (SslMode::Disable, _) | (SslMode::Prefer | SslMode::Require, None) => {
                ServerCheck::Nothing
            }
            (SslMode::Prefer | SslMode::Require, Some(_)) => ServerCheck::Chain,
        }
    }

    /// The mode as the driver knows it: whether to ask for TLS and whether
    /// to give up without it. Verification is the connector's business.
    pub fn driver_mode(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        }
    }

    /// The connector for the driver: reads `sslrootcert`, `sslcert` and
    /// `sslkey`. Build it once and clone it per connection.
    pub fn connector(&self) -> anyhow::Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = self.server_check();
        let roots = match (check, &self.root_certs) {
            (ServerCheck::Nothing, _) => None,
            (_, Some(RootCerts::File(path))) => Some(root_store_from_file(path)?),
            (_, Some(RootCerts::System)) => Some(system_root_store()?),
            // `split_url` refuses a check without roots.
            (_, None) => anyhow::bail!("sslmode: {} needs sslrootcert", self.mode.name()),
        };
        let verifier = CertificateCheck {
            roots: roots.map(Arc::new),
            check_host_name: check == ServerCheck::ChainAndHostName,
            algorithms: provider.signature_verification_algorithms,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match &self.client_certificate {
            None => builder.with_no_client_auth(),
            Some(client) => {
                let chain = read_certificates(&client.certificate, "sslcert")?;
                let key = PrivateKeyDer::from_pem_file(&client.key).map_err(|error| {
                    anyhow::anyhow!(
                        "sslkey: reading {} (an unencrypted PEM private key): {error}",
                        client.key.display()
                    )
                })?;
                builder.with_client_auth_cert(chain, key).with_context(|| {
                    format!(
                        "sslcert/sslkey: {} and {} do not make a usable client certificate",
                        client.certificate.display(),
                        client.key.display()
                    )
                })?
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

/// The PEM certificates of a file; an error when there are none.
fn read_certificates(path: &Path, parameter: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let reading = || format!("{parameter}: reading {}", path.display());
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", reading()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("{}: {error}", reading()))?;
    if certificates.is_empty() {
        anyhow::bail!("{parameter}: {} holds no PEM certificate", path.display());
    }
    Ok(certificates)
}

fn root_store_from_file(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path, "sslrootcert")? {
        roots
            .add(certificate)
            .with_context(|| format!("sslrootcert: a certificate in {}", path.display()))?;
    }
    Ok(roots)
}

fn system_root_store() -> anyhow::Result<RootCertStore> {
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        log::debug!("reading a system root certificate: {error}");
    }
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(native.certs);
    if roots.is_empty() {
        anyhow::bail!("sslrootcert=system: no trusted root certificates found on this system");
    }
    Ok(roots)
}

/// The server certificate verifier for every mode: checks the chain when
/// there are roots, the host name when asked to, and always that the
/// server holds the key of the certificate it presented.
#[derive(Debug)]
struct CertificateCheck {
    /// `None`: any certificate is accepted (`prefer`/`require` without
    /// `sslrootcert`, as in libpq).
    roots: Option<Arc<RootCertStore>>,
    check_host_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CertificateCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let certificate = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &certificate,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if self.check_host_name {
            rustls::client::verify_server_name(&certificate, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A sentence for an operator when a connection failed on the server's
/// certificate, found in the error's chain of causes.
pub fn handshake_hint(error: &(dyn StdError + 'static)) -> Option<&'static str> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(cause) = current {
        let tls_error = cause.downcast_ref::<rustls::Error>().or_else(|| {
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(problem)) = tls_error {
            return match problem {
                CertificateError::UnknownIssuer => Some(
                    "the server's certificate is not signed by a CA in sslrootcert",
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Some(
                    "the server's certificate does not name the url's host; verify-full checks it, verify-ca does not",
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Some("the server's certificate has expired")
                }
                _ => None,
            };
        }
        current = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::postgres_url::{split_url, ClientCertificate};

    fn options(url: &str) -> TlsOptions {
        split_url(url).expect("valid url").1
    }

    #[test]
    fn prefer_is_the_default_and_nothing_is_checked() {
        let (driver_url, tls) = split_url("postgres://u@db:5432/reg").unwrap();
        assert_eq!(driver_url, "postgres://u@db:5432/reg");
        assert_eq!(tls.mode, SslMode::Prefer);
        assert_eq!(tls.server_check(), ServerCheck::Nothing);
        assert_eq!(tls.driver_mode(), postgres::config::SslMode::Prefer);
    }

    #[test]
    fn tls_parameters_leave_the_driver_url_and_the_rest_stays_as_written() {
        let (driver_url, tls) = split_url(
            "postgres://u@db/reg?application_name=a%20b&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&options=-c+x&sslcert=c.pem&sslkey=k.pem",
        )
        .unwrap();
        assert_eq!(
            driver_url,
            "postgres://u@db/reg?application_name=a%20b&options=-c+x"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(
            tls.root_certs,
            Some(RootCerts::File(PathBuf::from("/etc/ca.pem")))
        );
        assert_eq!(
            tls.client_certificate,
            Some(ClientCertificate {
                certificate: PathBuf::from("c.pem"),
                key: PathBuf::from("k.pem"),
            })
        );
        assert_eq!(tls.server_check(), ServerCheck::ChainAndHostName);
        assert_eq!(tls.driver_mode(), postgres::config::SslMode::Require);
    }

    #[test]
    fn what_each_mode_checks() {
        let check = |query: &str| options(&format!("postgres://u@db/reg?{query}")).server_check();
        assert_eq!(check("sslmode=disable"), ServerCheck::Nothing);
        assert_eq!(check("sslmode=require"), ServerCheck::Nothing);
        // As libpq: a root certificate makes `require` check the chain.
        assert_eq!(
            check("sslmode=require&sslrootcert=ca.pem"),
            ServerCheck::Chain
        );
        assert_eq!(
            check("sslmode=verify-ca&sslrootcert=ca.pem"),
            ServerCheck::Chain
        );
        assert_eq!(
            check("sslmode=verify-full&sslrootcert=ca.pem"),
            ServerCheck::ChainAndHostName
        );
        // `system` alone means verify-full.
        assert_eq!(check("sslrootcert=system"), ServerCheck::ChainAndHostName);
        // The last value wins; an empty one counts as absent.
        assert_eq!(
            options("postgres://u@db/reg?sslmode=disable&sslmode=require").mode,
            SslMode::Require
        );
        assert_eq!(
            options("postgres://u@db/reg?sslmode=").mode,
            SslMode::Prefer
        );
    }

    #[test]
    fn a_missing_or_empty_root_certificate_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let tls = options(&format!(
            "postgres://u@db/reg?sslmode=verify-ca&sslrootcert={}",
            missing.display()
        ));
        let message = format!("{:#}", tls.connector().err().unwrap());
        assert!(
            message.starts_with(&format!("sslrootcert: reading {}", missing.display())),
            "{message}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let tls = options(&format!(
            "postgres://u@db/reg?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        ));
        let message = format!("{:#}", tls.connector().err().unwrap());
        assert_eq!(
            message,
            format!("sslrootcert: {} holds no PEM certificate", empty.display())
        );
        // Nothing to read without a check.
        assert!(options("postgres://u@db/reg?sslmode=require")
            .connector()
            .is_ok());
    }
}
