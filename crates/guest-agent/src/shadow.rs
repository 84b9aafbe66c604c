//! `/etc/shadow` editing for `set-password`; hashing is the `sha-crypt` crate.

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters allowed in a crypt salt.
pub fn salt_from_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| ITOA64[(*b & 0x3f) as usize] as char)
        .collect()
}

/// `$6$salt$hash` (SHA-512 crypt, 5000 rounds) of `password`.
pub fn sha512_crypt(password: &[u8], salt: &str) -> Result<String, String> {
    let salt = &salt[..salt.len().min(16)];
    let h = sha_crypt::sha512_crypt_b64(
        password,
        salt.as_bytes(),
        &sha_crypt::Sha512Params::default(),
    )
    .map_err(|e| format!("sha512-crypt: {e:?}"))?;
    Ok(format!("$6${salt}${h}"))
}

/// Validates a user name for `set-password` (the usual `[a-z_][a-z0-9_-]*$?`).
pub fn valid_user(user: &str) -> bool {
    let mut chars = user.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    user.len() <= 32
        && (first.is_ascii_lowercase() || first == '_')
        && user
            .trim_end_matches('$')
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Replaces the hash (field 2) and last-change day (field 3) of `user` in the
/// text of an shadow file. Errors if the user has no line.
pub fn shadow_set_hash(
    shadow: &str,
    user: &str,
    hash: &str,
    days_since_epoch: u64,
) -> Result<String, String> {
    let mut found = false;
    let mut out = String::with_capacity(shadow.len() + 128);
    for line in shadow.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let mut fields: Vec<&str> = body.split(':').collect();
        if !found && fields.len() >= 2 && fields[0] == user {
            found = true;
            let day = days_since_epoch.to_string();
            fields[1] = hash;
            if fields.len() >= 3 {
                fields[2] = &day;
            }
            out.push_str(&fields.join(":"));
            out.push('\n');
        } else {
            out.push_str(line);
        }
    }
    if found {
        Ok(out)
    } else {
        Err(format!("user {user:?} is not in the shadow file"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha512_crypt_spec_vector() {
        assert_eq!(
            sha512_crypt(b"Hello world!", "saltstring").unwrap(),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
    }

    #[test]
    fn user_names() {
        assert!(valid_user("root"));
        assert!(valid_user("_svc-1"));
        assert!(valid_user("machine$"));
        assert!(!valid_user(""));
        assert!(!valid_user("Root"));
        assert!(!valid_user("a:b"));
        assert!(!valid_user("a\nb"));
        assert!(!valid_user("1abc"));
        assert!(!valid_user(&"a".repeat(33)));
    }

    #[test]
    fn shadow_rewrite() {
        let shadow = "root:*:19000:0:99999:7:::\nbob:!:19000::::::\n";
        let out = shadow_set_hash(shadow, "bob", "$6$s$h", 20000).unwrap();
        assert_eq!(out, "root:*:19000:0:99999:7:::\nbob:$6$s$h:20000::::::\n");
        let out = shadow_set_hash("root:x\n", "root", "$6$s$h", 1).unwrap();
        assert_eq!(out, "root:$6$s$h\n");
        // No trailing newline is preserved as such; other lines untouched.
        let out = shadow_set_hash("a:1:2\nroot:*:3", "root", "H", 9).unwrap();
        assert_eq!(out, "a:1:2\nroot:H:9\n");
        assert!(shadow_set_hash(shadow, "alice", "H", 1).is_err());
        // Prefix of another name must not match.
        assert!(shadow_set_hash("rooty:*:1\n", "root", "H", 1).is_err());
    }
}
