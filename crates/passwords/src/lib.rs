//! PBKDF2-HMAC-SHA256 as one non-generic function.
//!
//! `pbkdf2_hmac::<Sha256>` is generic, so it is compiled in the crate that
//! calls it, at that crate's optimisation level: unoptimised, 600,000
//! rounds take about 9 s. Instantiated here, and this crate built with
//! `opt-level = 3` in every profile (workspace `Cargo.toml`), it takes
//! well under a second in debug builds too.

/// Derives a 32-byte key from `password` and `salt` with `rounds`
/// iterations of PBKDF2-HMAC-SHA256.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, rounds, &mut out);
    out
}

#[cfg(test)]
mod tests {
    /// RFC 7914 section 11 test vector (PBKDF2-HMAC-SHA256, c = 1).
    #[test]
    fn rfc7914_vector() {
        let k = super::pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(k[..8], [0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }
}
