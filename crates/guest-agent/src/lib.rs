//! The guest agent's password hashing, shared with the host so a password
//! can be hashed on the host (fast) and only its crypt(3) hash sent to the
//! guest (SHA-512 crypt under TCG costs the guest about a second).

pub mod crypt;
