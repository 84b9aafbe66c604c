//! Identifier helpers.

use rand::Rng;

/// A new random UUID (v4) as a string.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new id of the form `<prefix><n random chars from alphabet>`.
pub fn prefixed(prefix: &str, n: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(prefix.len() + n);
    s.push_str(prefix);
    for _ in 0..n {
        s.push(alphabet[rng.gen_range(0..alphabet.len())] as char);
    }
    s
}

/// Lowercase hex alphabet.
pub const HEX: &[u8] = b"0123456789abcdef";
/// Alphanumeric alphabet.
pub const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A reservation id as Nova makes them: `r-` + 8 base36 chars.
pub fn reservation_id() -> String {
    prefixed("r-", 8, b"0123456789abcdefghijklmnopqrstuvwxyz")
}

/// A random MAC address in the locally administered `fa:16:3e` range Neutron uses.
pub fn mac() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "fa:16:3e:{:02x}:{:02x}:{:02x}",
        rng.gen::<u8>(),
        rng.gen::<u8>(),
        rng.gen::<u8>()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::uuid().len(), 36);
        let r = super::reservation_id();
        assert!(r.starts_with("r-") && r.len() == 10);
        let m = super::mac();
        assert!(m.starts_with("fa:16:3e:") && m.len() == 17);
        let p = super::prefixed("s-", 17, super::ALNUM);
        assert_eq!(p.len(), 19);
    }
}
