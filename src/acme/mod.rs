//! ACME issuance and renewal (instant-acme), with HTTP-01 and TLS-ALPN-01 responders fed
//! through `tls::Challenges`.
