//! SHA-512 and the SHA-512 `crypt(3)` scheme (`$6$`, Ulrich Drepper's spec),
//! plus the `/etc/shadow` line rewrite used by `set-password`.

const K: [u64; 80] = [
    0x428a2f98d728ae22,
    0x7137449123ef65cd,
    0xb5c0fbcfec4d3b2f,
    0xe9b5dba58189dbbc,
    0x3956c25bf348b538,
    0x59f111f1b605d019,
    0x923f82a4af194f9b,
    0xab1c5ed5da6d8118,
    0xd807aa98a3030242,
    0x12835b0145706fbe,
    0x243185be4ee4b28c,
    0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f,
    0x80deb1fe3b1696b1,
    0x9bdc06a725c71235,
    0xc19bf174cf692694,
    0xe49b69c19ef14ad2,
    0xefbe4786384f25e3,
    0x0fc19dc68b8cd5b5,
    0x240ca1cc77ac9c65,
    0x2de92c6f592b0275,
    0x4a7484aa6ea6e483,
    0x5cb0a9dcbd41fbd4,
    0x76f988da831153b5,
    0x983e5152ee66dfab,
    0xa831c66d2db43210,
    0xb00327c898fb213f,
    0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2,
    0xd5a79147930aa725,
    0x06ca6351e003826f,
    0x142929670a0e6e70,
    0x27b70a8546d22ffc,
    0x2e1b21385c26c926,
    0x4d2c6dfc5ac42aed,
    0x53380d139d95b3df,
    0x650a73548baf63de,
    0x766a0abb3c77b2a8,
    0x81c2c92e47edaee6,
    0x92722c851482353b,
    0xa2bfe8a14cf10364,
    0xa81a664bbc423001,
    0xc24b8b70d0f89791,
    0xc76c51a30654be30,
    0xd192e819d6ef5218,
    0xd69906245565a910,
    0xf40e35855771202a,
    0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8,
    0x1e376c085141ab53,
    0x2748774cdf8eeb99,
    0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63,
    0x4ed8aa4ae3418acb,
    0x5b9cca4f7763e373,
    0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc,
    0x78a5636f43172f60,
    0x84c87814a1f0ab72,
    0x8cc702081a6439ec,
    0x90befffa23631e28,
    0xa4506cebde82bde9,
    0xbef9a3f7b2c67915,
    0xc67178f2e372532b,
    0xca273eceea26619c,
    0xd186b8c721c0c207,
    0xeada7dd6cde0eb1e,
    0xf57d4f7fee6ed178,
    0x06f067aa72176fba,
    0x0a637dc5a2c898a6,
    0x113f9804bef90dae,
    0x1b710b35131c471b,
    0x28db77f523047d84,
    0x32caab7b40c72493,
    0x3c9ebe0a15c9bebc,
    0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6,
    0x597f299cfc657e2a,
    0x5fcb6fab3ad6faec,
    0x6c44198c4a475817,
];

/// Incremental SHA-512.
#[derive(Clone)]
pub struct Sha512 {
    h: [u64; 8],
    buf: [u8; 128],
    buf_len: usize,
    total: u128,
}

impl Default for Sha512 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha512 {
    pub fn new() -> Self {
        Sha512 {
            h: [
                0x6a09e667f3bcc908,
                0xbb67ae8584caa73b,
                0x3c6ef372fe94f82b,
                0xa54ff53a5f1d36f1,
                0x510e527fade682d1,
                0x9b05688c2b3e6c1f,
                0x1f83d9abfb41bd6b,
                0x5be0cd19137e2179,
            ],
            buf: [0; 128],
            buf_len: 0,
            total: 0,
        }
    }

    fn block(h: &mut [u64; 8], block: &[u8]) {
        let mut w = [0u64; 80];
        for (i, c) in block.chunks_exact(8).enumerate() {
            w[i] = u64::from_be_bytes(c.try_into().expect("8-byte chunk"));
        }
        for i in 16..80 {
            let s0 = w[i - 15].rotate_right(1) ^ w[i - 15].rotate_right(8) ^ (w[i - 15] >> 7);
            let s1 = w[i - 2].rotate_right(19) ^ w[i - 2].rotate_right(61) ^ (w[i - 2] >> 6);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
        for i in 0..80 {
            let s1 = e.rotate_right(14) ^ e.rotate_right(18) ^ e.rotate_right(41);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(28) ^ a.rotate_right(34) ^ a.rotate_right(39);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }

    pub fn update(&mut self, mut data: &[u8]) -> &mut Self {
        self.total += data.len() as u128;
        if self.buf_len > 0 {
            let n = (128 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + n].copy_from_slice(&data[..n]);
            self.buf_len += n;
            data = &data[n..];
            if self.buf_len == 128 {
                Self::block(&mut self.h, &self.buf);
                self.buf_len = 0;
            }
        }
        while data.len() >= 128 {
            Self::block(&mut self.h, &data[..128]);
            data = &data[128..];
        }
        self.buf[..data.len()].copy_from_slice(data);
        self.buf_len += data.len();
        self
    }

    pub fn finish(&self) -> [u8; 64] {
        let mut s = self.clone();
        let bits = s.total * 8;
        s.update(&[0x80]);
        while s.buf_len != 112 {
            s.update(&[0]);
        }
        s.update(&bits.to_be_bytes());
        let mut out = [0u8; 64];
        for (o, h) in out.chunks_exact_mut(8).zip(s.h) {
            o.copy_from_slice(&h.to_be_bytes());
        }
        out
    }

    #[cfg(test)]
    pub fn digest(data: &[u8]) -> [u8; 64] {
        Sha512::new().update(data).finish()
    }
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters allowed in a crypt salt.
pub fn salt_from_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| ITOA64[(*b & 0x3f) as usize] as char)
        .collect()
}

/// `crypt(3)` with the `$6$` scheme. `rounds` None means the default 5000
/// (and no `rounds=` field in the output). The salt is cut to 16 characters.
pub fn sha512_crypt(key: &[u8], salt: &str, rounds: Option<u32>) -> String {
    let salt = &salt.as_bytes()[..salt.len().min(16)];
    let n_rounds = rounds.unwrap_or(5000).clamp(1000, 999_999_999);

    let b = Sha512::new().update(key).update(salt).update(key).finish();
    let mut a = Sha512::new();
    a.update(key).update(salt);
    let mut cnt = key.len();
    while cnt > 64 {
        a.update(&b);
        cnt -= 64;
    }
    a.update(&b[..cnt]);
    let mut cnt = key.len();
    while cnt > 0 {
        if cnt & 1 != 0 {
            a.update(&b);
        } else {
            a.update(key);
        }
        cnt >>= 1;
    }
    let a = a.finish();

    let mut dp = Sha512::new();
    for _ in 0..key.len() {
        dp.update(key);
    }
    let dp = dp.finish();
    let p: Vec<u8> = dp.iter().cycle().take(key.len()).copied().collect();

    let mut ds = Sha512::new();
    for _ in 0..16 + a[0] as usize {
        ds.update(salt);
    }
    let ds = ds.finish();
    let s: Vec<u8> = ds.iter().cycle().take(salt.len()).copied().collect();

    let mut c = a;
    for i in 0..n_rounds {
        let mut ctx = Sha512::new();
        if i & 1 != 0 {
            ctx.update(&p);
        } else {
            ctx.update(&c);
        }
        if i % 3 != 0 {
            ctx.update(&s);
        }
        if i % 7 != 0 {
            ctx.update(&p);
        }
        if i & 1 != 0 {
            ctx.update(&c);
        } else {
            ctx.update(&p);
        }
        c = ctx.finish();
    }

    let mut out = String::from("$6$");
    if rounds.is_some() {
        out.push_str(&format!("rounds={n_rounds}$"));
    }
    out.push_str(std::str::from_utf8(salt).unwrap_or(""));
    out.push('$');
    let mut b64 = |b2: u8, b1: u8, b0: u8, n: usize| {
        let mut w = ((b2 as u32) << 16) | ((b1 as u32) << 8) | b0 as u32;
        for _ in 0..n {
            out.push(ITOA64[(w & 0x3f) as usize] as char);
            w >>= 6;
        }
    };
    // Byte order from the specification: 21 triples, then the last byte.
    let mut idx = [0usize, 21, 42];
    for _ in 0..21 {
        b64(c[idx[0]], c[idx[1]], c[idx[2]], 4);
        // Each next triple rotates the positions and advances by one.
        idx = [idx[1] + 1, idx[2] + 1, idx[0] + 1];
    }
    b64(0, 0, c[63], 2);
    out
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

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha512_known_answers() {
        assert_eq!(
            hex(&Sha512::digest(b"")),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
             47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
        assert_eq!(
            hex(&Sha512::digest(b"abc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        // Two-block message, and the same data fed in odd-sized pieces.
        let msg = b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
        let want = "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018\
                    501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909";
        assert_eq!(hex(&Sha512::digest(msg)), want);
        let mut s = Sha512::new();
        for piece in msg.chunks(7) {
            s.update(piece);
        }
        assert_eq!(hex(&s.finish()), want);
    }

    #[test]
    fn sha512_crypt_spec_vectors() {
        // From the SHA-crypt specification (and `openssl passwd -6`).
        assert_eq!(
            sha512_crypt(b"Hello world!", "saltstring", None),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
        assert_eq!(
            sha512_crypt(b"Hello world!", "saltstringsaltstring", None),
            "$6$saltstringsaltst$e.3mR68CqZEpesEX1HlFZT6sEanSOjM/b5UoDyDo00a8syek2cJldMjrbtKP86.FJvzluVR7nc3DNzelAwTxj."
        );
        assert_eq!(
            sha512_crypt(b"Hello world!", "saltstringsaltstring", Some(10000)),
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."
        );
        assert_eq!(
            sha512_crypt(
                b"we have a short salt string but not a short password",
                "short",
                Some(77777)
            ),
            "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"
        );
        // Long key (> 64 bytes) exercises the B-repetition loop.
        assert_eq!(
            sha512_crypt(b"a very much longer text to encrypt.  This one even stretches over morethan one line.", "anotherlongsaltstring", Some(1400)),
            "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"
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
