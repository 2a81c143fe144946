//! The TLS set-up of the registry agent: system roots plus `ca_file`, or
//! no verification with `insecure_skip_tls_verify`. No requests here.

use anyhow::Context as _;

pub(super) fn tls_config(
    config: &crate::config::RegistryConfig,
) -> anyhow::Result<ureq::tls::TlsConfig> {
    if config.insecure_skip_tls_verify {
        log::warn!("registry TLS certificates are not verified (insecure_skip_tls_verify = true)");
        return Ok(ureq::tls::TlsConfig::builder()
            .disable_verification(true)
            .build());
    }
    let mut certificates: Vec<ureq::tls::Certificate<'static>> = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        log::debug!("reading a system root certificate: {error}");
    }
    for certificate in native.certs {
        certificates.push(ureq::tls::Certificate::from_der(certificate.as_ref()).to_owned());
    }
    if let Some(ca_file) = &config.ca_file {
        let pem = std::fs::read(ca_file)
            .with_context(|| format!("reading registry ca_file {}", ca_file.display()))?;
        let mut found = 0;
        for item in ureq::tls::parse_pem(&pem) {
            let item =
                item.with_context(|| format!("parsing registry ca_file {}", ca_file.display()))?;
            if let ureq::tls::PemItem::Certificate(certificate) = item {
                certificates.push(certificate);
                found += 1;
            }
        }
        if found == 0 {
            anyhow::bail!(
                "registry ca_file {} holds no PEM certificate",
                ca_file.display()
            );
        }
    }
    Ok(ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certificates))
        .build())
}
